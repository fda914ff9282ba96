"""One promotion at a time per model and stage, across processes and machines.

The lock is a ZenML tag with a unique name: creating it succeeds for exactly one
caller, because the store (SQLite file or a ZenML server's database) enforces
unique tag names. A holder that died (``kill -9``) cannot release it, so a lock
older than ``stale_after`` seconds is taken over: older by the store's own clock
(the time it stamps on a tag created now), never by this machine's alone, which
may have been stepped forward or differ from a ZenML server's.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.adapters.tags import delete_tag, find_tag

if TYPE_CHECKING:
    from zenml.client import Client

logger = logging.getLogger(__name__)


class PromotionLockTimeoutError(RuntimeError):
    """Another promotion of the same model held the lock for too long."""


#: how long a waiter first waits before it tries the lock again, doubled up to the most
FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS = 0.05, 0.5


def lock_name(model_name: str, stage: str) -> str:
    return f"promotion-lock-{model_name}-{stage}"


@contextlib.contextmanager
def promotion_lock(
    model_name: str, stage: str, timeout: float = 120, stale_after: float = 600
) -> Iterator[None]:
    """Hold the model's promotion lock for ``stage`` while the block runs."""
    from zenml.client import Client
    from zenml.exceptions import EntityExistsError

    client = Client()
    name = lock_name(model_name, stage)
    deadline = time.monotonic() + timeout
    acquired = False
    pause = FIRST_PAUSE_SECONDS
    try:
        while True:
            try:
                # a Ctrl-C just after the tag is made would leave the lock held for good
                with ctrl_c_held():
                    client.create_tag(name=name)
                    acquired = True
                break
            except EntityExistsError:
                held_since = _created(client, name)  # None: released a moment ago
                if (
                    held_since is not None
                    and _age(held_since) > stale_after
                    and _store_age(client, held_since) > stale_after
                ):
                    logger.warning(
                        "taking over %s, held since %s by a run that died", name, held_since
                    )
                    delete_tag(client, name)
                    continue
                if time.monotonic() > deadline:
                    raise PromotionLockTimeoutError(
                        f"another promotion of '{model_name}' to {stage} has held the lock since "
                        f"{held_since} (tag '{name}'); retry, or delete the tag if no run is "
                        "promoting: zenml tag delete " + name
                    ) from None
                _wait(pause)  # a promotion takes a second or less: looked at soon,
                pause = min(pause * 2, MAX_PAUSE_SECONDS)  # then no faster than twice a second
        yield
    finally:
        if acquired:
            delete_tag(client, name)


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _created(client: Client, name: str) -> datetime | None:
    found = find_tag(client, name)  # not get_tag: see adapters/tags.py
    return None if found is None else found.created


def _age(created: datetime) -> float:
    return (datetime.now(UTC) - created.replace(tzinfo=UTC)).total_seconds()


def _store_age(client: Client, created: datetime) -> float:
    """How long ago ``created`` was by the store's clock: a tag created now carries it."""
    probe = client.create_tag(name=f"promotion-lock-clock-{uuid.uuid4().hex}")
    try:
        return (probe.created - created).total_seconds()
    finally:
        with contextlib.suppress(KeyError):
            client.delete_tag(probe.id)
