"""Logs kept no longer than the deployment's ``retention_days``.

The inference log, the router's routing and feedback logs and the processes' own
logs grow without end; every deploy and every monitoring run removes their files
last written more than ``retention_days`` ago (a log of a process still running
is kept, whatever its age: it still writes to it).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Collection, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

#: the files the project's logs are written to, in the directories given
LOG_PATTERNS = ("requests-*.jsonl", "feedback-*.jsonl", "routing-*.jsonl", "*.log")


def prune_old_logs(
    directories: Iterable[Path],
    days: int | None,
    keep: Collection[Path] = (),
    now: float | None = None,
) -> list[Path]:
    """Remove the log files in ``directories`` last written over ``days`` days ago, except
    ``keep``; returns what was removed (nothing when ``days`` is None)."""
    if days is None:
        return []
    cutoff = (time.time() if now is None else now) - days * 86_400
    kept = {Path(path).resolve() for path in keep}
    removed = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for pattern in LOG_PATTERNS:
            for path in directory.glob(pattern):
                with contextlib.suppress(OSError):  # gone already, or not ours to remove
                    if path.resolve() not in kept and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed.append(path)
    if removed:
        logger.info("removed %d log file(s) older than %d days", len(removed), days)
    return removed
