"""The warm command server's naming and safety checks (cli/warm.py), without a server:
tests/integration/test_warm.py runs one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cli import warm


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A checkout of a few files, as the key reads them."""
    (tmp_path / "run.py").write_text("")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "main.py").write_text("x = 1\n")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "dev.yaml").write_text("a: 1\n")
    monkeypatch.setattr(warm, "ROOT", tmp_path)
    return tmp_path


def test_a_server_is_named_by_the_files_and_the_environment_it_imported(project):
    environ = {"HOME": "/home/u", "ZENML_CONFIG_PATH": "/a"}
    key = warm.server_key(environ)
    same = {
        **environ,
        "PWD": "/elsewhere",
        "SHLVL": "3",
        "TMUX_PANE": "%3",
        "SSH_TTY": "/x",
        "MAKELEVEL": "1",
    }
    assert warm.server_key(same) == key  # the shell's and the terminal's own
    assert warm.server_key({**environ, "ZENML_CONFIG_PATH": "/b"}) != key
    (project / "configs" / "dev.yaml").write_text("a: 22\n")  # a config the CLI reads
    assert warm.server_key(environ) != key
    changed = warm.files_key()
    stat = (project / "cli" / "main.py").stat()
    os.utime(project / "cli" / "main.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert warm.files_key() != changed  # an edit that keeps the size is seen by its time


def test_sockets_live_in_a_private_directory_under_a_short_path(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert not warm._private_dir(shared)  # another user could connect or plant a socket
    assert warm._private_dir(tmp_path / "mine")
    assert (tmp_path / "mine").stat().st_mode & 0o777 == 0o700
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    assert not warm._private_dir(tmp_path / "link")  # swapped in by someone else
    monkeypatch.setattr(warm, "sockets_dir", lambda: tmp_path / ("x" * 120))
    assert warm.socket_path() is None  # longer than a socket's address may be: runs cold


def test_a_command_with_interpreter_options_runs_in_its_own_process(monkeypatch):
    monkeypatch.setattr(warm, "sockets_dir", lambda: warm.Path("/tmp/s"))
    monkeypatch.setattr(warm.sys, "argv", ["run.py", "train"])
    monkeypatch.setattr(warm.sys, "orig_argv", ["python", "run.py", "train"])
    assert warm.socket_path() is not None
    monkeypatch.setattr(warm.sys, "orig_argv", ["python", "-X", "importtime", "run.py", "train"])
    assert warm.socket_path() is None  # the server was started without them


def test_a_socket_replaced_by_another_servers_is_no_longer_this_ones(tmp_path):
    path = tmp_path / "k.sock"
    first = socket.socket(socket.AF_UNIX)
    first.bind(str(path))
    own = path.stat().st_ino
    assert warm._is_bound_here(path, own)
    path.unlink()
    second = socket.socket(socket.AF_UNIX)
    second.bind(str(path))
    assert not warm._is_bound_here(path, own)
    first.close()
    second.close()


def test_the_caller_imports_the_standard_library_only():
    """What a warm command costs before the hand-over: the key and a connection."""
    code = (
        "import sys; import cli.warm; cli.warm.socket_path(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'click', 'zenml', 'numpy', 'pandas', 'pydantic', 'yaml', 'sklearn'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_warm_status_with_no_server_says_so_and_clears_what_a_killed_one_left(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(warm, "warm_dir", lambda: tmp_path / "warm")
    monkeypatch.setattr(warm, "sockets_dir", lambda: tmp_path / "sockets")
    (tmp_path / "warm").mkdir()
    (tmp_path / "sockets").mkdir()
    (tmp_path / "warm" / "abc.lock").write_text("999999")  # nobody holds it
    (tmp_path / "sockets" / "abc.sock").write_text("")
    (tmp_path / "warm" / "abc.log").write_text("pid 999999 serving abc.sock\n")
    assert warm._warm_command(["--status"]) == 0
    assert "No warm server" in capsys.readouterr().out
    assert list((tmp_path / "warm").iterdir()) == []
    assert not (tmp_path / "sockets" / "abc.sock").exists()
    assert warm._warm_command(["--bogus"]) == 2


def test_a_server_that_does_not_answer_leaves_the_command_to_its_caller(tmp_path, monkeypatch):
    """A server stopped (SIGSTOP) or hung accepts connections in the kernel's backlog but
    forks nothing: the caller gives up after the handshake's time and runs the command
    itself; nothing runs twice (a child forked later finds the caller gone)."""
    import time

    monkeypatch.setattr(warm, "HANDSHAKE_SECONDS", 0.5)
    (tmp_path / "s").mkdir(mode=0o700)
    path = tmp_path / "s" / "k.sock"
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(path))
    silent.listen(8)
    started = time.monotonic()
    try:
        assert warm._hand_over(path) is None
    finally:
        silent.close()
    assert time.monotonic() - started < 5


def test_sockets_nobody_listens_on_are_cleared_and_live_ones_kept(tmp_path):
    dead, live = tmp_path / "dead.sock", tmp_path / "live.sock"
    gone = socket.socket(socket.AF_UNIX)
    gone.bind(str(dead))
    gone.close()  # kill -9: the file stays, nothing listens
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(live))
    listening.listen(1)
    try:
        warm._clear_dead_sockets(tmp_path)
    finally:
        listening.close()
    assert not dead.exists() and live.exists()
