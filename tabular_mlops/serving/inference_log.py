"""The durable log of every prediction the service makes, read back by monitoring.

Format: JSON Lines, one record per predicted row, in daily files
``<directory>/requests-YYYY-MM-DD-<host>-<pid>.jsonl`` (UTC): one file per
writing process, so the workers of a server, and the pods of a cluster sharing
one volume, never interleave their lines (appends from several processes are
not atomic on network filesystems). Writing happens on a background thread fed
by a deque, so a request never waits on disk; the thread flushes and fsyncs
every ``flush_interval`` seconds, so a crash loses at most the records of that
interval.

Lines that could not be written (a full disk, a lost volume) are dropped and
counted, and the first write that succeeds again starts with a *gap* line,
``{"timestamp": ..., "gap": {"dropped": N, "since": ..., "until": ...}}``: the
loss stays in the log itself, where monitoring reads it (:func:`read_records`)
and tells the stack's alerter, even when the server has long restarted.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import to_json

if TYPE_CHECKING:
    import pandas as pd


logger = logging.getLogger(__name__)


class InferenceRecord(BaseModel):
    request_id: str
    #: index of the row within its request (batch requests share a request_id)
    row: int = 0
    timestamp: datetime
    model_name: str
    model_version: str
    inputs: dict[str, Any]
    #: the label of a classifier, the value of a regressor
    prediction: Any
    #: a classifier's class probabilities (a regressor's lines have none)
    probabilities: dict[str, float] = {}
    #: who asked: "live" traffic, or e.g. "smoke-test"; monitoring reads live traffic
    source: str = "live"
    #: the client's own ``x-request-id``, kept beside the service's (unique) request id
    correlation_id: str | None = None
    #: inputs further than a training span outside the range training covered: the row
    #: was answered, but it is not the world's data, and monitoring and the rollout's
    #: evidence leave it out (``core/problems.far_outside_check``)
    outside: list[str] | None = None


def log_file(directory: Path, when: datetime, prefix: str = "requests") -> Path:
    writer = f"{socket.gethostname()}-{os.getpid()}"
    return directory / f"{prefix}-{when.astimezone(UTC):%Y-%m-%d}-{writer}.jsonl"


def read_evidence(directory: Path, prefix: str, experiment: str) -> list[dict[str, Any]]:
    """The experiment's lines of every ``<prefix>-*.jsonl`` in ``directory`` (all writers:
    each router process, each replica); a torn line is skipped.

    Each writer's lines stay in the order it wrote them (a canary's step event after
    the requests that earned it), whatever their timestamps say: a clock set back
    while a router runs stamps later lines earlier. Writers are interleaved by time."""
    import heapq

    writers: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    day = len(prefix) + len("-YYYY-MM-DD-")
    for path in _files(directory, prefix):
        lines = writers[path.name[day : -len(".jsonl")]]  # by day, within one writer
        for text in _file_lines(path):
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict) and line.get("experiment") == experiment:
                lines.append(line)
    return list(heapq.merge(*writers.values(), key=lambda line: str(line.get("timestamp", ""))))


class JsonLinesLog:
    """Appends JSON lines from any thread to ``<prefix>-<day>-<host>-<pid>.jsonl``; a single
    daemon thread does the I/O, flushing and fsyncing every ``flush_interval``.

    Lines wait in a deque and the thread wakes on a timer, not per line: woken per
    line (a queue), it contended for the GIL with the event loop on every request."""

    def __init__(
        self,
        directory: Path,
        prefix: str = "requests",
        flush_interval: float = 0.2,
        counted: Callable[[str, int], None] | None = None,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.flush_interval = flush_interval
        #: called with ("written" or "dropped", lines) after each write (e.g. a metric)
        self.counted = counted or (lambda outcome, lines: None)
        self.written = self.dropped = 0
        #: whether the last write failed (lines are being dropped now)
        self.failing = False
        #: lines dropped since the last write that succeeded, and when the first failed
        self._gap = 0
        self._gap_since: datetime | None = None
        self._pending: collections.deque[str] = collections.deque()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._drain, name=f"{prefix}-log", daemon=True)
        self._thread.start()

    def append(self, line: str) -> None:
        self._pending.append(line)  # atomic: no lock, no wake-up

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)

    def health(self) -> str:
        """``ok``, or what was lost: for ``/readyz`` and the router's status."""
        if self.failing:
            return f"dropping lines: {self.dropped} dropped so far, the last write failed"
        if self.dropped:
            return f"writing again; {self.dropped} lines were dropped earlier"
        return "ok"

    def _drain(self) -> None:
        while True:
            closing = self._closing.wait(self.flush_interval)
            lines = self._take_pending()
            # a gap is written with the next lines, or on its own when the writer closes
            if lines or (closing and self._gap_since):
                gap = [gap_line(self._gap, self._gap_since)] if self._gap_since else []
                try:
                    self._write(gap + lines, after_failure=self.failing)
                except OSError as exc:
                    # a full disk, a lost volume: the lines are dropped and counted, the
                    # service goes on answering, and the next interval tries again
                    self.dropped += len(lines)
                    self._gap += len(lines)
                    self._gap_since = self._gap_since or datetime.now(UTC)
                    if not self.failing:
                        logger.error("inference log %s: %s; dropping lines", self.directory, exc)
                    self.failing = True
                    self.counted("dropped", len(lines))  # last: the state is whole by then
                else:
                    if self.failing:
                        logger.warning(
                            "inference log %s: writing again after dropping %s lines",
                            self.directory,
                            self._gap,
                        )
                    self.failing = False
                    self._gap, self._gap_since = 0, None
                    self.written += len(lines)
                    self.counted("written", len(lines))
            if closing:
                return

    def _write(self, lines: list[str], after_failure: bool) -> None:
        """Append ``lines`` to today's file; after a failed write, on a line of their own:
        a write cut short (a full disk) leaves a torn last line, which must stay alone (the
        reader skips and counts it) rather than spoil the next record."""
        target = log_file(self.directory, datetime.now(UTC), self.prefix)
        with target.open("ab") as handle:
            torn = after_failure and handle.tell() > 0 and not _ends_with_newline(target)
            start = b"\n" if torn else b""
            handle.write(start + ("\n".join(lines) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())

    def _take_pending(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self._pending.popleft())
            except IndexError:
                return lines


def gap_line(dropped: int, since: datetime) -> str:
    """The line that says ``dropped`` lines were lost between ``since`` and now."""
    now = datetime.now(UTC).isoformat()
    gap = {"dropped": dropped, "since": since.isoformat(), "until": now}
    return json.dumps({"timestamp": now, "gap": gap})


def _gap_of(line: str) -> tuple[int, datetime] | None:
    """``(dropped, until)`` of a gap line, None for anything else."""
    try:
        gap = json.loads(line)["gap"]
        return int(gap["dropped"]), datetime.fromisoformat(gap["until"])
    except (ValueError, TypeError, KeyError):
        return None


def lost_lines(directory: Path, prefix: str, since: datetime) -> int:
    """Lines the writers of ``<prefix>-*.jsonl`` in ``directory`` dropped in gaps that ended
    at or after ``since`` (their gap lines; see the module's docstring)."""
    lost = 0
    for line in _lines(directory, prefix):
        gap = _gap_of(line) if '"gap"' in line else None
        if gap is not None and gap[1] >= since:
            lost += gap[0]
    return lost


def _lines(directory: Path, prefix: str) -> Iterator[str]:
    """Every line of every writer's ``<prefix>-*.jsonl`` in ``directory``, file by file."""
    for path in _files(directory, prefix):
        yield from _file_lines(path)


def _files(directory: Path, prefix: str) -> list[Path]:
    """Every writer's ``<prefix>-<day>-<writer>.jsonl`` in ``directory``, by name."""
    return sorted(directory.glob(f"{prefix}-*.jsonl")) if directory.is_dir() else []


def _file_lines(path: Path) -> Iterator[str]:
    """A log file's lines; a byte that is no UTF-8 (a write cut short) is replaced, not
    fatal."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        yield from handle


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


class InferenceLogWriter(JsonLinesLog):
    """The serving log: one line per predicted row."""

    def write(self, records: Iterable[InferenceRecord]) -> None:
        for record in records:
            self.append(record.model_dump_json())

    def write_lines(self, lines: Iterable[str]) -> None:
        """Lines already serialized (:func:`row_lines`)."""
        for line in lines:
            self.append(line)


def logged(answer: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """What a log line keeps of an answer: (label, probabilities) of a classifier, (value,
    no probabilities) of a regressor."""
    return answer.get("label", answer.get("prediction")), answer.get("probabilities", {})


def row_lines(
    model_name: str,
    model_version: str,
    source: str,
    names: list[str],
    rows: Iterable[tuple[str, list[Any], Any, dict[str, float]]],
    inputs_of: Callable[[Sequence[Any]], dict[str, Any]] | None = None,
    flags: Sequence[list[str] | None] | None = None,
    correlation_id: str | None = None,
    numbered: bool = False,
) -> list[str]:
    """One :class:`InferenceRecord` line per (request id, values, label, probabilities),
    serialized straight from dicts: at a stream's rate, building a pydantic record per
    row cost more than scoring it, and ``json.dumps`` most of the rest. ``inputs_of``
    applies the log's column policy; ``flags`` are the rows' far-outside flags, in order;
    ``numbered`` rows are the rows of one request (``row`` 0, 1, ...), else each is its
    own (an event); ``correlation_id`` is the client's id of the request."""
    timestamp = datetime.now(UTC).isoformat()
    lines = []
    for index, (request_id, values, prediction, probabilities) in enumerate(rows):
        line = {
            "request_id": request_id,
            "row": index if numbered else 0,
            "timestamp": timestamp,
            "model_name": model_name,
            "model_version": model_version,
            "inputs": (inputs_of(values) if inputs_of else dict(zip(names, values, strict=True))),
            "prediction": prediction,
            "probabilities": probabilities,
            "source": source,
        }
        if correlation_id is not None:
            line["correlation_id"] = correlation_id
        if flags is not None and flags[index]:
            line["outside"] = flags[index]
        lines.append(to_json(line).decode())
    return lines


class FlushedLog:
    """The same files, written through to the operating system before :meth:`write`
    returns, and fsynced every ``sync_interval`` seconds by a daemon thread.

    The stream consumer logs a micro-batch before it acknowledges its events: a
    consumer killed at any point (``kill -9``) leaves no acknowledged prediction out
    of the log, since what a process wrote survives it. An fsync per micro-batch
    would also cover the machine going down, but on a disk busy with the broker's
    own writes one fsync took up to 300 ms, and every event behind it waited
    (``bench/streaming.py``, p99 at 1,000 events/s); so a crash of the machine
    loses at most ``sync_interval`` of log, as the service's log does."""

    def __init__(self, directory: Path, prefix: str = "requests", sync_interval: float = 1.0):
        self.directory, self.prefix = Path(directory), prefix
        self.directory.mkdir(parents=True, exist_ok=True)
        self._path: Path | None = None
        self._handle: Any = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._unsynced = False
        self._interval = sync_interval
        self._syncer = threading.Thread(target=self._sync, name=f"{prefix}-fsync", daemon=True)
        self._syncer.start()

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        target = log_file(self.directory, datetime.now(UTC), self.prefix)
        with self._lock:
            if target != self._path:
                self._close_handle()
                self._path, self._handle = target, target.open("a", encoding="utf-8")
            self._handle.write("\n".join(lines) + "\n")
            self._handle.flush()
            self._unsynced = True

    def close(self) -> None:
        self._closing.set()
        self._syncer.join(timeout=5)
        with self._lock:
            self._close_handle()

    def _sync(self) -> None:
        """fsync a duplicate of the file's descriptor outside the lock: a write never
        waits on the disk, and a file closed meanwhile (a new day) is still synced."""
        while not self._closing.wait(self._interval):
            with self._lock:
                if not self._unsynced or self._handle is None:
                    continue
                descriptor, self._unsynced = os.dup(self._handle.fileno()), False
            try:
                os.fsync(descriptor)
            except OSError as exc:  # the next interval tries again; writes carry on
                logger.warning("fsync of the inference log failed: %s", exc)
                self._unsynced = True
            finally:
                os.close(descriptor)

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._path, self._handle = None, None


def read_records(
    directory: Path,
    start: datetime | None = None,
    end: datetime | None = None,
    request_ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """Every logged row between ``start`` and ``end`` (UTC), one column per input feature
    plus ``request_id``, ``row``, ``timestamp``, ``model_name``, ``model_version``,
    ``prediction`` and ``source``; only the rows of ``request_ids`` when given (whenever
    they were logged: a clock set back stamps later answers earlier).

    A line that does not parse (a crash mid-write, a disk error) is skipped, not
    fatal, and counted: ``frame.attrs["unreadable_lines"]``, which monitoring reports;
    rows a writer could not log, by the gap lines written when it could again,
    ``frame.attrs["dropped_rows"]`` (those of gaps that ended in the window)."""
    import pandas as pd

    rows = []
    unreadable = dropped = 0
    for path in sorted(Path(directory).glob("requests-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = InferenceRecord.model_validate_json(line)
                except ValueError:
                    gap = _gap_of(line)
                    if gap is None:
                        unreadable += 1
                    elif not ((start and gap[1] < start) or (end and gap[1] >= end)):
                        dropped += gap[0]
                    continue
                if (start and record.timestamp < start) or (end and record.timestamp >= end):
                    continue
                if request_ids is not None and record.request_id not in request_ids:
                    continue
                rows.append(
                    {
                        **record.inputs,
                        "request_id": record.request_id,
                        "row": record.row,
                        "timestamp": record.timestamp,
                        "model_name": record.model_name,
                        "model_version": record.model_version,
                        "prediction": record.prediction,
                        "source": record.source,
                        "far_outside": bool(record.outside),
                    }
                )
    frame = pd.DataFrame(rows)
    frame.attrs["unreadable_lines"] = unreadable
    frame.attrs["dropped_rows"] = dropped
    return frame
