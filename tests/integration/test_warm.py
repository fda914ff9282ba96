"""Warm commands (cli/warm.py), for real: ``python run.py`` processes, the server they
start, its forked commands, signals and ``kill -9`` of each process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tabular_mlops.adapters.net import wait_until
from tabular_mlops.adapters.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def environment(directory: Path) -> dict[str, str]:
    """A ZenML store, repository and state directory in ``directory``, warm starts on."""
    (directory / "repo").mkdir()
    environ = {k: v for k, v in os.environ.items() if k != "TABULAR_MLOPS_WARM"}
    environ.update(
        ZENML_CONFIG_PATH=str(directory / "zenml"),
        ZENML_REPOSITORY_PATH=str(directory / "repo"),
        TABULAR_MLOPS_STATE_DIR=str(directory / "state"),
        ZENML_LOGGING_VERBOSITY="INFO",  # as a user's shell has it: each step says it started
    )
    return environ


@pytest.fixture
def env(tmp_path):
    """An environment of this test's own: its first command starts its warm server."""
    environ = environment(tmp_path)
    yield environ
    run(environ, "warm", "--stop")


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory):
    """An environment the first and the last test share: the last one kills the warm
    server the first one started (each warm server imports everything once: a server
    fewer is some 10 CPU-s less). Either also starts one itself when run alone."""
    environ = environment(tmp_path_factory.mktemp("warm"))
    yield environ
    run(environ, "warm", "--stop")


def run(env: dict[str, str], *args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def start(env: dict[str, str], *args: str, ignoring: tuple[int, ...] = ()) -> subprocess.Popen:
    """``run.py ARGS`` started with ``ignoring`` ignored, as ``nohup`` or ``cmd &`` in a
    script start it."""

    def ignore() -> None:
        for signum in ignoring:
            signal.signal(signum, signal.SIG_IGN)

    return subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "run.py"), *args], env=env, cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore,
    )  # fmt: skip


def until_printed(process: subprocess.Popen, *texts: str, timeout: float = 300) -> str:
    """What ``process`` printed on stdout up to the first line holding all ``texts``."""
    import threading

    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if all(text in line for text in texts):
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), "".join(lines)[-3000:]
    return "".join(lines)


def server(env: dict[str, str]) -> psutil.Process | None:
    """The warm server serving ``env``, once it serves (one at a time in these tests)."""
    for lock in (Path(env["TABULAR_MLOPS_STATE_DIR"]) / "warm").glob("*.lock"):
        text = lock.read_text().strip()
        log = lock.with_suffix(".log")
        if text and log.exists() and f"pid {text} serving" in log.read_text():
            try:
                return psutil.Process(int(text))
            except psutil.NoSuchProcess:
                continue
    return None


def served(env: dict[str, str]) -> str:
    """What the servers logged: a line per command they ran."""
    logs = (Path(env["TABULAR_MLOPS_STATE_DIR"]) / "warm").glob("*.log")
    return "".join(log.read_text() for log in logs)


def warm_server(env: dict[str, str]) -> psutil.Process:
    assert wait_until(lambda: server(env) is not None, timeout=120), served(env)
    found = server(env)
    assert found is not None
    return found


def test_a_command_runs_in_the_warm_server_as_it_runs_in_its_own_process(shared_env, tmp_path):
    """Same output on the same streams, same exit status, the caller's working directory,
    environment and umask; only the start-up differs."""
    env = shared_env
    cold = run(env, "deploy", "--status")  # no server yet: runs here and starts one
    assert cold.returncode == 3, cold.stdout + cold.stderr  # nothing deployed
    first = warm_server(env)
    warm = run(env, "deploy", "--status")
    assert (warm.returncode, warm.stdout, warm.stderr) == (3, cold.stdout, cold.stderr)
    assert served(env).count("runs deploy") == 1

    failing = run(env, "train", "--env", "no-such-env")
    assert failing.returncode != 0 and "no-such-env" in failing.stderr
    assert failing.stdout == ""

    (tmp_path / "elsewhere").mkdir()
    wrote = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "run.py"), "demand-data", "--output", "d.csv"],
        env=env, cwd=tmp_path / "elsewhere", capture_output=True, text=True, timeout=600,
        preexec_fn=lambda: os.umask(0o027),
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    written = tmp_path / "elsewhere" / "d.csv"
    assert written.exists() and (written.stat().st_mode & 0o777) == 0o640
    assert served(env).count("runs demand-data") == 1

    # another environment is another server; the first keeps serving its own
    other = run({**env, "TABULAR_MLOPS_EXAMPLE": "1"}, "deploy", "--status")
    assert other.returncode == 3
    assert served(env).count("runs deploy") == 1
    assert server(env) is not None and first.is_running()


def test_signals_reach_the_command_and_a_killed_caller_takes_its_command_along(env):
    # the server's first caller ignored Ctrl-C (`run.py ... &` in a script): later
    # commands are still interrupted by theirs. It trains to the end: a Ctrl-C while the
    # first command creates the ZenML store can leave the store without some flavors
    first = start(env, "train", "--env", "dev", ignoring=(signal.SIGINT, signal.SIGQUIT))
    assert first.wait(timeout=600) == 0, first.communicate()
    host = warm_server(env)

    # Ctrl-C in the middle of a step that writes to ZenML's and MLflow's stores: before,
    # it could hang three minutes on "database is locked", or be lost and the run go on
    interrupted = start(env, "train", "--env", "dev", "--set", "enable_cache=false")
    before = until_printed(interrupted, "register_model", "has started")
    interrupted.send_signal(signal.SIGINT)
    out, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 1 and "Aborted!" in err, before + out + err  # as cold
    assert "database is locked" not in out + err
    assert wait_until(lambda: not host.children(), timeout=30)

    hung_up = start(env, "train", "--env", "dev", ignoring=(signal.SIGHUP,))  # nohup
    assert wait_until(lambda: bool(host.children()), timeout=60)
    time.sleep(1.0)
    hung_up.send_signal(signal.SIGHUP)
    _, err = hung_up.communicate(timeout=600)
    assert hung_up.returncode == 0, err

    # uncached, and told once a step has started: a cached training warm is over within
    # the second the other cases wait, and the signal then found nothing to stop
    terminated = start(env, "train", "--env", "dev", "--set", "enable_cache=false")
    until_printed(terminated, "validate_data", "has started")
    terminated.terminate()
    _, err = terminated.communicate(timeout=120)
    # as a command in its own process: killed by the signal, or, when it lands inside a
    # step, the run stopped by ZenML's handler (marked failed) and the one line saying so;
    # which of the two depends on the moment, not on warm or cold (never a finished run)
    interrupted_in_a_step = terminated.returncode == 1 and "(RunInterruptedException)" in err
    assert terminated.returncode == -signal.SIGTERM or interrupted_in_a_step, err[-3000:]

    killed = start(env, "train", "--env", "dev")
    assert wait_until(lambda: bool(host.children()), timeout=60)
    command = host.children()[0]
    killed.kill()  # kill -9 of the caller
    killed.wait()
    assert wait_until(lambda: not command.is_running() or command.status() == "zombie", 30)
    assert host.is_running()


def test_a_killed_server_is_replaced_and_a_stopped_one_is_gone(shared_env):
    env = shared_env
    run(env, "deploy", "--status")
    first = warm_server(env)
    first.kill()  # kill -9: its socket file stays behind
    first.wait(timeout=30)
    after = run(env, "deploy", "--status")  # refused by the dead socket: runs here
    assert after.returncode == 3, after.stderr
    second = warm_server(env)
    assert second.pid != first.pid

    status = run(env, "warm", "--status")
    assert f"pid {second.pid}" in status.stdout and "(this shell's)" in status.stdout
    stopped = run(env, "warm", "--stop")
    assert f"stopped the warm server pid {second.pid}" in stopped.stdout
    assert wait_until(lambda: not second.is_running() or second.status() == "zombie", 30)
    from cli.warm import sockets_dir

    logs = list((Path(env["TABULAR_MLOPS_STATE_DIR"]) / "warm").glob("*.log"))
    assert logs and not any((sockets_dir() / f"{log.stem}.sock").exists() for log in logs)
    assert "No warm server" in run(env, "warm", "--status").stdout
