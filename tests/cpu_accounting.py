"""``pytest --cpu-times``: the CPU each test module costs, the servers and commands it
starts included, to know what to make cheaper; ``--module-times``: each module's wall
time, to keep ``LONGEST_FIRST`` (``tests/conftest.py``) in order. The suite is
CPU-bound on two cores (wall time is CPU time over the cores), so module wall times
alone mislead: a module that waits on a server of its own looks long and costs little.

Each test's own CPU (its worker process's, phase by phase) travels to the controller
in the reports; the processes a test starts are sampled by the controller every
``SAMPLE_SECONDS`` and counted for the test named in their environment
(``PYTEST_CURRENT_TEST``, which pytest sets while a test runs and every process it
starts inherits: a server, a command, a forked uvicorn worker, a warm server's
children). A process that ends between two samples is counted up to the last one.
"""

from __future__ import annotations

import collections
import os
import resource
import threading
import time
from collections.abc import Generator
from typing import Any

import pluggy
import pytest

SAMPLE_SECONDS = 0.25
#: the key of a report's ``user_properties`` entry with its phase's CPU seconds
PROPERTY = "cpu_seconds"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's two accounts: in CPU and in wall time."""
    for name, help_text in (
        ("--cpu-times", "print the CPU seconds each test module cost, the processes it "
                        "started included (tests/cpu_accounting.py)"),
        ("--module-times", "print each test module's wall time (setup, call and teardown of "
                           "its tests), longest first: the order LONGEST_FIRST should keep"),
    ):  # fmt: skip
        parser.addoption(name, action="store_true", help=help_text)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


#: this process's CPU seconds at its previous report (set once collection is over)
_LAST = [0.0]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collection (importing the test modules) is no test's cost."""
    _LAST[0] = _own_cpu()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """This process's CPU since the previous report: the phase's own CPU."""
    outcome = yield
    if not item.config.getoption("cpu_times"):
        return
    now = _own_cpu()
    outcome.get_result().user_properties.append((PROPERTY, now - _LAST[0]))
    _LAST[0] = now


#: what a started process is, by a part of its command line (the first that matches)
KINDS = (
    ("tabular_mlops.serving.server", "a model's server"),
    ("tabular_mlops.serving.router", "a router"),
    ("supervisor", "a supervisor"),
    ("zenml.zen_server", "a ZenML server"),
    ("mlflow", "an MLflow server"),
    ("nats-server", "the NATS broker"),
    ("chrom", "Chromium"),
    ("wrk", "wrk"),
    ("schemathesis", "schemathesis"),
    ("cli.warm", "a warm command server"),
)


def _kind(cmdline: list[str], parent: str | None) -> str:
    """What a process is: a server, a command (``run.py train``), or a worker of its
    parent's kind (uvicorn's and multiprocessing's workers start as ``spawn_main``)."""
    text = " ".join(cmdline)
    if "spawn_main" in text or "multiprocessing" in text:
        base = parent or "a process"
        return base if base.endswith("(its workers)") else f"{base} (its workers)"
    for part, kind in KINDS:
        if part in text:
            return kind
    for position, word in enumerate(cmdline):
        if word.endswith("run.py"):  # the command's name, not its options' values
            command = next((w for w in cmdline[position + 1 :] if not w.startswith("-")), "")
            return f"run.py {command}".strip()
        if word in ("-m", "-c") and position + 1 < len(cmdline):
            return f"python {word} {(cmdline[position + 1].strip().splitlines() or [''])[0][:40]}"
    return " ".join(w.rsplit("/", 1)[-1] for w in cmdline[:2]) or "?"


class Sampler:
    """Every process that names a test in its environment: its latest CPU seconds."""

    def __init__(self) -> None:
        #: (pid, start time) -> [test node id, CPU seconds, kind] (None: not a test's process)
        self.seen: dict[tuple[int, float], list[Any] | None] = {}
        #: pid -> kind, of the processes seen (a worker is its parent's kind)
        self._kinds: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        import psutil

        for process in psutil.process_iter(["pid", "ppid", "create_time", "cmdline"]):
            key = (process.info["pid"], process.info["create_time"])
            if key[0] == os.getpid():
                continue
            try:
                if key not in self.seen:
                    test = process.environ().get("PYTEST_CURRENT_TEST")
                    kind = _kind(process.info["cmdline"] or [], self._kinds.get(process.ppid()))
                    self._kinds[key[0]] = kind
                    self.seen[key] = [test.rsplit(" (", 1)[0], 0.0, kind] if test else None
                record = self.seen[key]
                if record is not None:
                    times = process.cpu_times()
                    record[1] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def by_test(self) -> dict[str, float]:
        totals: collections.defaultdict[str, float] = collections.defaultdict(float)
        for record in self.seen.values():
            if record is not None:
                totals[record[0]] += record[1]
        return totals

    def by_kind(self) -> dict[str, tuple[float, int]]:
        """Kind of process -> (CPU seconds, how many were started)."""
        totals: collections.defaultdict[str, list[float]] = collections.defaultdict(
            lambda: [0.0, 0]
        )
        for record in self.seen.values():
            if record is not None:
                totals[record[2]][0] += record[1]
                totals[record[2]][1] += 1
        return {kind: (cpu, int(count)) for kind, (cpu, count) in totals.items()}


_SAMPLER: list[Sampler] = []
#: test module -> [its tests' own CPU seconds, wall seconds], from every worker's reports
#: (the controller sees them all)
_MODULES: collections.defaultdict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])


def pytest_sessionstart(session: pytest.Session) -> None:
    is_worker = hasattr(session.config, "workerinput")
    if session.config.getoption("cpu_times") and not is_worker:
        _SAMPLER.append(Sampler())
        _SAMPLER[0].start()


def _module(node_id: str) -> str:
    return node_id.split("::")[0]


#: test node id -> its own CPU seconds (all phases)
_TESTS: collections.defaultdict[str, float] = collections.defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _MODULES[_module(report.nodeid)]
    row[1] += report.duration
    for key, value in report.user_properties:
        if key == PROPERTY and isinstance(value, float):
            row[0] += value
            _TESTS[report.nodeid] += value


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if config.getoption("module_times"):
        _module_times(terminalreporter)
    if config.getoption("cpu_times") and _SAMPLER:
        _cpu_times(terminalreporter)


def _module_times(terminalreporter: Any) -> None:
    from tests.conftest import LONGEST_FIRST

    terminalreporter.section("module wall times, longest first")
    for module, (_, seconds) in sorted(_MODULES.items(), key=lambda kv: -kv[1][1]):
        listed = "" if module.rsplit("/", 1)[-1] in LONGEST_FIRST else "  (not listed)"
        terminalreporter.write_line(f"{seconds:8.1f} s  {module}{listed}")


def _cpu_times(terminalreporter: Any) -> None:
    started = time.perf_counter()
    _SAMPLER[0].stop()
    #: module -> [own CPU seconds, CPU seconds of what it started, wall seconds]
    modules: collections.defaultdict[str, list[float]] = collections.defaultdict(
        lambda: [0.0, 0.0, 0.0]
    )
    for module, (own, wall) in _MODULES.items():
        row = modules[module]
        row[0], row[2] = own, wall
    for node, cpu in _SAMPLER[0].by_test().items():
        modules[_module(node)][1] += cpu
    terminalreporter.section(
        "CPU seconds per module: its tests' own and the processes they started"
    )
    total_own = sum(row[0] for row in modules.values())
    total_children = sum(row[1] for row in modules.values())
    terminalreporter.write_line(
        f"{total_own + total_children:8.0f} CPU-s in all: {total_own:.0f} in the test "
        f"processes, {total_children:.0f} in what they started (sampled every "
        f"{SAMPLE_SECONDS} s; {time.perf_counter() - started:.1f} s to sum up)"
    )
    terminalreporter.write_line(f"{'CPU-s':>8} {'own':>7} {'started':>8} {'wall s':>7}  module")
    for module, (own, started_cpu, wall) in sorted(
        modules.items(), key=lambda kv: -(kv[1][0] + kv[1][1])
    ):
        if own + started_cpu >= 0.5:
            terminalreporter.write_line(
                f"{own + started_cpu:8.1f} {own:7.1f} {started_cpu:8.1f} {wall:7.1f}  {module}"
            )
    tests = collections.Counter(_TESTS)
    tests.update(_SAMPLER[0].by_test())
    terminalreporter.section("the 25 costliest tests in CPU seconds (own and started)")
    for node, cpu in tests.most_common(25):
        terminalreporter.write_line(f"{cpu:8.1f}  {node}")
    terminalreporter.section("CPU seconds of what the tests started, by kind of process")
    terminalreporter.write_line(f"{'CPU-s':>8} {'started':>8}  kind")
    for kind, (cpu, count) in sorted(_SAMPLER[0].by_kind().items(), key=lambda kv: -kv[1][0]):
        if cpu >= 0.5:
            terminalreporter.write_line(f"{cpu:8.1f} {count:8d}  {kind}")
