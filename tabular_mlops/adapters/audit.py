"""The audit trail of an environment: one append-only, hash-chained JSON-lines file.

Every deploy, rollback, stop, promotion (by the gates or by hand), rollout
decision, drift acceptance and token rotation appends who asked, when, what and
the reason given (``core/audit.py`` chains and checks the entries). Commands
that run at once take turns on the file's lock. ``python run.py audit`` lists
the entries and reports any line changed, inserted or removed since.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tabular_mlops.adapters.config_files import environment_name
from tabular_mlops.adapters.paths import LOCAL_DIR
from tabular_mlops.core.audit import AuditEntry, chained, verify

logger = logging.getLogger(__name__)


def audit_file(env: str) -> Path:
    return LOCAL_DIR / "audit" / f"{environment_name(env)}.jsonl"


def who() -> str:
    """``user@host``, and the ZenML user (``(zenml: name)``) when this command already
    knows it, as every command that runs a pipeline does: on a shared ZenML server that is
    the account that acted. An entry never asks the store, nor waits on a dead server;
    commands that never load ZenML (``deploy --stop`` on dev) name the OS user only."""
    from tabular_mlops.adapters.compat import cached_zenml_user

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        user = f"uid {os.getuid()}"
    zenml = cached_zenml_user()
    return f"{user}@{socket.gethostname()}" + (f" (zenml: {zenml})" if zenml else "")


def record(
    env: str,
    action: str,
    model: str,
    version: str | None = None,
    reason: str | None = None,
    by: str | None = None,
    **details: Any,
) -> AuditEntry | None:
    """Append an entry (``by``: who asked, when another process asked: a step on a pod, a
    decision its dying command wrote down); None (and an error logged) when the file
    cannot be written (a full disk): what was done is done, and the missing entry is said."""
    path = audit_file(env)
    entry = AuditEntry(
        seq=0, at=datetime.now(UTC), who=by or who(), env=environment_name(env), action=action,
        model=model, version=version, reason=reason, details=details,
    )  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+", encoding="utf-8") as log:
            fcntl.flock(log, fcntl.LOCK_EX)  # two commands at once take turns
            log.seek(0)
            sealed = chained(entry, _last(log.read().splitlines()))
            log.write(sealed.model_dump_json() + "\n")
            log.flush()
            os.fsync(log.fileno())
    except OSError as exc:
        logger.error("the audit entry for %s of '%s' was not written to %s: %s",
                     action, model, path, exc)  # fmt: skip
        return None
    return sealed


def _last(lines: list[str]) -> AuditEntry | None:
    for line in reversed(lines):
        with contextlib.suppress(ValidationError):
            return AuditEntry.model_validate_json(line)
    return None


def read_trail(env: str) -> tuple[list[AuditEntry], list[str]]:
    """The environment's entries and every break of their chain (``core/audit.verify``)."""
    path = audit_file(env)
    if not path.is_file():
        return [], []
    return verify(path.read_text(encoding="utf-8").splitlines())
