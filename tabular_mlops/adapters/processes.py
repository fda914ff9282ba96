"""Server processes that outlive the command that started them: start, check, stop.

Each server runs in a process group of its own (``start_new_session``), so a
stop reaches its workers too, and a Ctrl-C in the starting terminal does not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Collection
from pathlib import Path
from typing import Any

import psutil

from tabular_mlops.adapters.compat import process_start
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


#: how often a stop checks whether what it signalled has exited
STOP_POLL_SECONDS = 0.05


def has_exited(pid: int) -> bool:
    """Whether ``pid`` is gone or has exited and only waits to be reaped: a server's
    worker outlives its parent as a zombie until init collects it (a second, here),
    and waiting for that made every stop of a service a second longer."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def stop_process_group(pid: int, grace: float = 15) -> None:
    """SIGTERM the group led by ``pid``; SIGKILL it if it is still there after ``grace`` s."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    logger.info("sent SIGTERM to process group %s", pid)

    def gone() -> bool:
        if not has_exited(pid):
            return False
        _reap(pid)  # after it exited: reaped before, it would stay a zombie of ours
        return True

    if not wait_until(gone, grace, interval=STOP_POLL_SECONDS):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        logger.warning("process group %s ignored SIGTERM for %.0f s: killed", pid, grace)


#: a recorded start at or above this is seconds since 1970 (``create_time()``), as records
#: written before 2026-12-04 hold; seconds since boot never reach it (31 years up)
_WALL_CLOCK_START = 1e9
#: how far the clock may have moved such a start since it was recorded
_CLOCK_SLACK_SECONDS = 2.0


def identity(pid: int) -> float:
    """What tells this process from a later one given the same pid: when it started, in
    seconds since boot (``compat.process_start``: no change of the clock moves it)."""
    return process_start(psutil.Process(pid))


def is_wall_clock_start(started: float) -> bool:
    """Whether a recorded start is an earlier version's (seconds since 1970)."""
    return started >= _WALL_CLOCK_START


def is_same_process(pid: int, started: float) -> bool:
    """Whether ``pid`` still names the process that started at ``started`` (its
    :func:`identity`, or an earlier version's wall-clock start), and it has not exited (a
    zombie waits only for its parent to collect its exit status)."""
    try:
        process = psutil.Process(pid)
        return _started_at(process, started) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _started_at(process: psutil.Process, started: float) -> bool:
    """Whether ``process`` (a zombie too) is the one that started at ``started``."""
    if is_wall_clock_start(started):
        return abs(process.create_time() - started) <= _CLOCK_SLACK_SECONDS
    return process_start(process) == started


def stop_process_trees(pids: Collection[int], grace: float = 15) -> None:
    """:func:`stop_process_tree` of several processes at once: every group and descendant
    is told together and waited for together (one after the other, each stop waits for
    its own process to exit, a few tenths of a second each)."""
    tree: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            tree += [root, *root.children(recursive=True)]
    leaders = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            leaders.append(pid)
            logger.info("sent SIGTERM to process group %s", pid)

    def gone() -> bool:
        exited = [pid for pid in leaders if has_exited(pid)]
        for pid in exited:
            _reap(pid)  # after it exited: reaped before, it would stay a zombie of ours
        return len(exited) == len(leaders)

    if not wait_until(gone, grace, interval=STOP_POLL_SECONDS):
        for pid in leaders:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        logger.warning("process groups %s ignored SIGTERM for %.0f s: killed", leaders, grace)
    terminate(tree, grace)


def stop_process_tree(pid: int, grace: float = 15) -> None:
    """Stop ``pid``, its process group and every descendant, wherever they moved
    (uvicorn's workers of `mlflow server` outlived a group-only stop)."""
    stop_process_trees([pid], grace)


def terminate(processes: list[psutil.Process], grace: float) -> None:
    """SIGTERM each; SIGKILL those still there after ``grace`` s (an exited process that
    waits to be reaped by another parent counts as gone)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()

    def running() -> list[psutil.Process]:
        return [p for p in processes if p.is_running() and not has_exited(p.pid)]

    if not wait_until(lambda: not running(), grace, interval=STOP_POLL_SECONDS):
        for process in running():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def record_process(pid_file: Path, pid: int, **details: Any) -> None:
    """Write ``pid`` and its start time (and ``details``) to ``pid_file``, so a later
    command stops this process and never another one that was given the same pid."""
    pid_file.write_text(json.dumps({"pid": pid, "started": identity(pid), **details}))


def read_process_record(pid_file: Path) -> dict[str, Any] | None:
    """The record of a recorded process that still runs; None (and the file removed) when
    it is gone, its pid names another process now, or the file is not a record."""
    if not pid_file.is_file():
        return None
    try:
        record = json.loads(pid_file.read_text())
        pid, started = int(record["pid"]), float(record["started"])
    except (ValueError, KeyError, TypeError):
        logger.warning("%s: not a pid record; removed without signalling anything", pid_file)
        pid_file.unlink(missing_ok=True)
        return None
    if not is_same_process(pid, started):
        pid_file.unlink(missing_ok=True)
        return None
    return dict(record)


def orphans_of_group(pid: int, started: float | None) -> list[psutil.Process]:
    """The processes still in the group that ``pid`` (started at ``started``) led, when
    ``pid`` itself is gone (``kill -9`` of `mlflow server` left its uvicorn serving the
    port). Linux never gives a new process the id of a group that still has members, so
    they are that leader's. A leader that exited and waits to be reaped (a zombie of the
    command that started it) is gone too, when it is that very process: its workers
    serve on without it; a zombie its start does not match, or a leader whose start is
    not known, is another's, and nothing of its group is touched."""
    try:
        leader = psutil.Process(pid)
        if leader.status() != psutil.STATUS_ZOMBIE:
            return []  # alive: its group is its own business
        if started is None or not _started_at(leader, started):
            return []
    except psutil.NoSuchProcess:
        pass  # gone: the group's members, if any, are its
    found = []
    for process in psutil.process_iter():
        if process.pid == pid:
            continue  # the zombie leader itself: its parent reaps it
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            if os.getpgid(process.pid) == pid:
                found.append(process)
    return found


def stop_recorded_process(pid_file: Path, grace: float = 10) -> bool:
    """Stop the process ``pid_file`` records, if it is still that process, and whatever
    of its group outlived it: whether anything was running. The file is removed either
    way."""
    raw_pid, raw_started = None, None
    with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
        raw = json.loads(pid_file.read_text())
        raw_pid = int(raw["pid"])
        raw_started = float(raw["started"])
    record = read_process_record(pid_file)
    if record is not None:
        stop_process_tree(int(record["pid"]), grace=grace)
    orphans = (
        orphans_of_group(raw_pid, raw_started) if raw_pid is not None and record is None else []
    )
    if orphans:
        logger.info("stopping pids %s, left by their group's killed leader %s",
                    [p.pid for p in orphans], raw_pid)  # fmt: skip
    terminate(orphans, grace)
    pid_file.unlink(missing_ok=True)
    return record is not None or bool(orphans)
