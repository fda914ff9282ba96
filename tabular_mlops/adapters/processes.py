"""Server processes that outlive the command that started them: start, check, stop.

Each server runs in a process group of its own (``start_new_session``), so a
stop reaches its workers too, and a Ctrl-C in the starting terminal does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from tabular_mlops.adapters.net import wait_until

logger = logging.getLogger(__name__)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # only our own children can be reaped
        os.waitpid(pid, os.WNOHANG)


def stop_process_group(pid: int, grace: float = 15) -> None:
    """SIGTERM the group led by ``pid``; SIGKILL it if it is still there after ``grace`` s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    logger.info("sent SIGTERM to process group %s", pid)

    def gone() -> bool:
        _reap(pid)
        return not is_alive(pid)

    if not wait_until(gone, grace):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        logger.warning("process group %s ignored SIGTERM for %.0f s: killed", pid, grace)
