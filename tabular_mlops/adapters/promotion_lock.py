"""One promotion at a time per model and stage, across processes and machines.

The lock is a ZenML tag with a unique name: creating it succeeds for exactly one
caller, because the store (SQLite file or a ZenML server's database) enforces
unique tag names. A holder that died (``kill -9``) cannot release it. Each holder
names itself in a second tag made just after the lock (``<lock>-held-by-<host>-<pid>-
<start>``), so a waiter on the same machine sees at once that the holder is gone and
takes the lock over, as it does a lock still without a holder's name
``HOLDERLESS_SECONDS`` after it was made (its command killed between the two tags); a
holder on another machine (a pod) is judged by age: a lock older than
``stale_after`` seconds is taken over, older by the store's own clock (the time it
stamps on a tag created now), never by this machine's alone, which may have been
stepped forward or differ from a ZenML server's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tabular_mlops.adapters.interrupts import ctrl_c_held
from tabular_mlops.adapters.processes import identity, is_same_process
from tabular_mlops.adapters.tags import delete_tag, find_tag

if TYPE_CHECKING:
    from zenml.client import Client

logger = logging.getLogger(__name__)


class PromotionLockTimeoutError(RuntimeError):
    """Another promotion of the same model held the lock for too long."""


#: how long a waiter first waits before it tries the lock again, doubled up to the most
FIRST_PAUSE_SECONDS, MAX_PAUSE_SECONDS = 0.05, 0.5
#: a holder names itself a few milliseconds after it takes the lock: a lock that has had
#: no holder's name for this long (by the store's clock) lost its holder in between
HOLDERLESS_SECONDS = 10.0


def lock_name(model_name: str, stage: str) -> str:
    return f"promotion-lock-{model_name}-{stage}"


def holder_prefix(name: str) -> str:
    """The start of the names of the tags by which holders name themselves."""
    return f"{name}-held-by-"


def holder_name(name: str) -> str:
    """A holder tag for the lock ``name``: this machine, pid and start, and a one-off part
    (a name this process left behind is never taken for the holder's)."""
    pid = os.getpid()
    return (
        f"{holder_prefix(name)}{socket.gethostname()}-{pid}-{identity(pid)}-{uuid.uuid4().hex[:8]}"
    )


@contextlib.contextmanager
def promotion_lock(
    model_name: str, stage: str, timeout: float = 120, stale_after: float = 600
) -> Iterator[None]:
    """Hold the model's promotion lock for ``stage`` while the block runs."""
    from zenml.client import Client
    from zenml.exceptions import EntityExistsError

    client = Client()
    name = lock_name(model_name, stage)
    me = holder_name(name)
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
                    with contextlib.suppress(EntityExistsError):  # one this process left
                        client.create_tag(name=me)
                break
            except EntityExistsError:
                held = find_tag(client, name)  # None: released a moment ago
                if held is not None and _holder_died(client, name, held.created, stale_after):
                    logger.warning(
                        "taking over %s, held since %s by a run that died", name, held.created
                    )
                    with contextlib.suppress(KeyError):  # by id: never a lock taken since
                        client.delete_tag(held.id)
                    continue
                if time.monotonic() > deadline:
                    raise PromotionLockTimeoutError(
                        f"another command changing '{model_name}' ({stage}) has held its lock "
                        f"since {None if held is None else held.created} (tag '{name}'); retry, "
                        "or delete the tag if no command is changing it: zenml tag delete " + name
                    ) from None
                _wait(pause)  # a promotion takes a second or less: looked at soon,
                pause = min(pause * 2, MAX_PAUSE_SECONDS)  # then no faster than twice a second
        yield
    finally:
        if acquired:
            delete_tag(client, name)
            delete_tag(client, me)  # a name left behind is older than any lock made since


def _holder_died(client: Client, name: str, held_since: datetime, stale_after: float) -> bool:
    """Whether the lock's holder is gone: the process named for it since it was made ran
    on this machine and has exited, or (named from another machine, or not named) the
    lock is older than ``stale_after`` (``HOLDERLESS_SECONDS``). A holder running on this
    machine is never gone, whatever the clocks say. A name older than the lock is a
    holder's before it; the names of holders found gone are deleted."""
    prefix, here = holder_prefix(name), f"{holder_prefix(name)}{socket.gethostname()}-"
    # filtered again here: the store's LIKE reads a '_' of the model's name as any character
    listed = client.list_tags(name=f"startswith:{prefix}", size=1000).items
    named = [tag for tag in listed if tag.name.startswith(prefix)]
    running = {tag.id for tag in named if tag.name.startswith(here)
               and _runs(tag.name[len(here):])}  # fmt: skip
    holders = {tag.id for tag in named if tag.created >= held_since}
    if holders & running:
        return False
    if holders and all(tag.name.startswith(here) for tag in named if tag.id in holders):
        died = True  # every holder ran here, and none runs
    else:
        limit = stale_after if holders else HOLDERLESS_SECONDS
        died = _age(held_since) > limit and _store_age(client, held_since) > limit
    if died:
        for tag in named:
            if tag.id not in running:
                with contextlib.suppress(KeyError):
                    client.delete_tag(tag.id)
    return died


def _runs(pid_and_start: str) -> bool:
    """Whether ``<pid>-<start>[-<one-off>]`` names a process that still runs on this
    machine."""
    pid, _, rest = pid_and_start.partition("-")
    try:
        return is_same_process(int(pid), float(rest.partition("-")[0]))
    except ValueError:  # not a name this module wrote: assume it runs
        return True


def _wait(seconds: float) -> None:
    time.sleep(seconds)


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
