"""Server processes that outlive the command that started them: start, check, stop.

Each server runs in a process group of its own (``start_new_session``), so a
stop reaches its workers too, and a Ctrl-C in the starting terminal does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import psutil

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


def identity(pid: int) -> float:
    """What tells this process from a later one given the same pid: its start time."""
    return float(psutil.Process(pid).create_time())


def is_same_process(pid: int, started: float) -> bool:
    """Whether ``pid`` still names the process that started at ``started``, and it has not
    exited (a zombie waits only for its parent to collect its exit status)."""
    try:
        process = psutil.Process(pid)
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_process_tree(pid: int, grace: float = 15) -> None:
    """Stop ``pid``, its process group and every descendant, wherever they moved
    (uvicorn's workers of `mlflow server` outlived a group-only stop)."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    stop_process_group(pid, grace)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
