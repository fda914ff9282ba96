"""Commands that start warm: a server of this checkout's that has imported the project
once (ZenML, scikit-learn, MLflow, Evidently, the pipelines and their steps) and forks
a process for each command.

Every ``python run.py`` command paid several seconds of imports before its first line of
work (docs/benchmarks.md), and `train`, `deploy` and `infer` run apart paid them three
times. The first command runs as it always did, in its own process, and starts this
server beside it; later ones are handed to the server: ``run.py`` connects to its
socket and sends its arguments, working directory, environment and umask, and its
standard input, output and error themselves (file descriptors, not copies of the
bytes). The server forks a child, which takes them over and runs the command; the
caller waits for the child's exit status and passes on Ctrl-C and ``kill`` to it, and
the child ends when its caller does. Output, prompts, exit status and signals are the
command's own, as if it had run in the caller's process.

A server answers for one checkout, one interpreter, one installed set of packages, one
state of the project's files and one environment: its socket is named by a hash of all
of them (every source and config file's size and modification time, every environment
variable but the shell's own few), so a changed file or variable means another server,
never a stale one. A server exits when its files change or after ``IDLE_SECONDS``
without a command. ``TABULAR_MLOPS_WARM=0`` runs every command in its own process;
``python run.py warm --status`` and ``--stop`` show and stop this checkout's servers.
The socket is in a directory only its user can open, and the server answers only
its own user's processes.

Everything here up to the fork decision imports the standard library only: the path
of a warm command costs the hash and a connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

#: "0" turns warm starts off: every command imports everything itself
WARM_ENV = "TABULAR_MLOPS_WARM"
#: set only in a server's own environment: the socket it serves
SERVE_ENV = "TABULAR_MLOPS_WARM_SERVE"
#: a server with no command for this long exits
IDLE_SECONDS = 15 * 60
#: how often an idle server looks at the project's files and its socket
LOOK_SECONDS = 20.0
#: how long a caller waits for the server to fork its command before running it itself
#: (a server that does not answer: stopped, or hung)
HANDSHAKE_SECONDS = 30.0
#: the project's directories whose files a command imports or reads on start
PROJECT_DIRS = ("cli", "pipelines", "steps", "materializers", "tabular_mlops", "configs")
#: a shell's own variables, which differ between terminals and change nothing
VOLATILE = frozenset({
    "PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES", SERVE_ENV, WARM_ENV,
    # per terminal, window or login: one server for all of them
    "TMUX_PANE", "WINDOWID", "TERM_SESSION_ID", "ITERM_SESSION_ID", "KITTY_WINDOW_ID",
    "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "GPG_TTY", "XDG_SESSION_ID", "VSCODE_PID",
    # make's own (`make run` and the commands after it share one server)
    "MAKELEVEL", "MAKEFLAGS", "MFLAGS",
})  # fmt: skip
#: the signals a caller passes on to its command (and, when it ignores one, ignores there)
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
#: servers of one checkout at most (each holds its imports: about half a GB): a new one
#: stops the one that served a command longest ago
MAX_SERVERS = 3
#: AF_UNIX paths are limited to 108 bytes on Linux
MAX_SOCKET_PATH = 100
#: the modules a command may need, imported once by the server (a command imports the
#: rest itself, as before)
PRELOAD = (
    "cli.main",
    "pipelines.training",
    "pipelines.deployment",
    "pipelines.batch_inference",
    "pipelines.rollout",
    "pipelines.continuous_training",
    "zenml.zen_stores.sql_zen_store",
    "tabular_mlops.adapters.stacks",
    "tabular_mlops.adapters.evidently_reports",
    "mlflow",
    "bentoml",
    "evidently.legacy.report",
    "evidently.legacy.pipeline.column_mapping",
    "evidently.legacy.metric_preset",
    "skl2onnx",
    "mlflow.store.tracking.sqlalchemy_store",
    "pandera.pandas",
    "git",
)

ROOT = Path(__file__).resolve().parents[1]


def enter() -> None:
    """``run.py``: serve (in a server's own process), hand the command to a warm server,
    or run it here (and start a server for the next command)."""
    serving = os.environ.pop(SERVE_ENV, None)
    if serving is not None:
        command = _serve(Path(serving))  # returns only in a forked child
        _run_forked(*command)
        return
    if sys.argv[1:2] == ["warm"]:
        sys.exit(_warm_command(sys.argv[2:]))
    path = socket_path() if os.environ.get(WARM_ENV, "1") != "0" else None
    if path is not None:
        try:
            status = _hand_over(path)
        except KeyboardInterrupt:  # Ctrl-C before the command started: as click says it
            sys.stderr.write("\nAborted!\n")
            os._exit(1)
        if status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        if not {"-h", "--help"} & set(sys.argv[1:]) and len(sys.argv) > 1:
            _start_server(path)
    from cli.main import main

    main()


# --------------------------------------------------------------------------- naming
def warm_dir() -> Path:
    """Where this checkout's servers keep their lock (holding the pid) and log: under its
    state directory."""
    from tabular_mlops.adapters.paths import LOCAL_DIR  # the standard library only

    return LOCAL_DIR / "warm"


def sockets_dir() -> Path:
    """Where the sockets are: a short path (a socket's is limited to 108 bytes, which a
    checkout's state directory can pass), the user's runtime directory or a private one
    in the temporary directory. A socket's name is its server's key: unique to the
    checkout, its files and the environment."""
    import tempfile

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "tabular-mlops"
    return Path(tempfile.gettempdir()) / f"tabular-mlops-{os.getuid()}"


def _files_key(digest: Any) -> None:
    """The interpreter, its installed packages, and every project file's size and time."""
    import sysconfig

    digest.update(f"{sys.executable}\0{sys.version}\0{ROOT}\0".encode())
    for site in sorted({sysconfig.get_paths()[scheme] for scheme in ("purelib", "platlib")}):
        # each installed distribution's metadata and .pth file: an install, an upgrade
        # or a removal changes one (a file of a package edited in place does not)
        with contextlib.suppress(OSError), os.scandir(site) as entries:
            for entry in sorted(entries, key=lambda entry: entry.name):
                if entry.name.endswith((".dist-info", ".pth")):
                    digest.update(f"{entry.name}\0{entry.stat().st_mtime_ns}\0".encode())
    names = [ROOT / "run.py"]
    for top in PROJECT_DIRS:
        for folder, dirs, files in os.walk(ROOT / top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            names += [Path(folder, f) for f in sorted(files) if not f.endswith(".pyc")]
    for name in names:
        with contextlib.suppress(OSError):
            stat = name.stat()
            digest.update(f"{name}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())


def files_key() -> str:
    digest = hashlib.sha256()
    _files_key(digest)
    return digest.hexdigest()


def server_key(environ: dict[str, str] | None = None) -> str:
    """What a server must share with a command to run it: the files and the environment."""
    digest = hashlib.sha256()
    _files_key(digest)
    environ = dict(os.environ if environ is None else environ)
    for name in sorted(environ):
        if name not in VOLATILE:
            digest.update(f"{name}={environ[name]}\0".encode())
    return digest.hexdigest()[:24]


def socket_path() -> Path | None:
    """The socket of the server for this command's files and environment; None where a
    socket cannot be used (another system, a path too long for one)."""
    if not all(hasattr(socket, name) for name in ("AF_UNIX", "send_fds", "SO_PEERCRED")):
        return None  # not Linux: every command runs in its own process
    if sys.orig_argv[1 : len(sys.orig_argv) - len(sys.argv)]:
        return None  # interpreter options (-X importtime, -W error): the server has none
    path = sockets_dir() / f"{server_key()}.sock"
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH else None


def _lock_of(path: Path) -> Path:
    return warm_dir() / f"{path.stem}.lock"


def _private_dir(path: Path) -> bool:
    """Whether ``path`` exists as a directory only this user can open (made so if new)."""
    import stat as kinds

    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = path.lstat()  # a symbolic link put in its place is not it
    except OSError:
        return False
    return (
        kinds.S_ISDIR(found.st_mode) and found.st_uid == os.getuid() and found.st_mode & 0o077 == 0
    )


# --------------------------------------------------------------------------- caller
def _hand_over(path: Path) -> int | None:
    """Run this command in the server at ``path``; its exit status, or None when no
    server took it (nothing ran: the caller runs it itself)."""
    if not _private_dir(path.parent):
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(HANDSHAKE_SECONDS)
    ignored = [name for name in FORWARDED
               if signal.getsignal(getattr(signal, name)) is signal.SIG_IGN]  # fmt: skip
    try:
        connection.connect(os.fspath(path))
        if _peer_uid(connection) != os.getuid():
            raise ConnectionRefusedError("the socket is not this user's server")
        request = json.dumps(
            {"argv": sys.argv, "cwd": str(Path.cwd()), "env": dict(os.environ), "umask": _umask(),
             "ignored": ignored}
        ).encode()  # fmt: skip
        socket.send_fds(connection, [struct.pack("!I", len(request))], [0, 1, 2])
        connection.sendall(request)
        answers = connection.makefile("rb")
        started = json.loads(answers.readline() or b"null")
    except (OSError, ValueError):
        connection.close()
        return None  # no server, a stale socket, or one that died before forking
    if not isinstance(started, dict) or not isinstance(started.get("pid"), int):
        connection.close()  # a child forked after this sees it closed and runs nothing
        return None
    child = int(started["pid"])
    connection.settimeout(None)  # the command takes as long as it takes

    forwarded: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        forwarded.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for name in FORWARDED:
        if name not in ignored:  # nohup, `cmd &` in a script: ignored here, ignored there
            signal.signal(getattr(signal, name), forward)
    try:
        ended = json.loads(answers.readline() or b"null")
    except (OSError, ValueError):
        ended = None
    connection.close()
    if isinstance(ended, dict) and isinstance(ended.get("status"), int):
        return int(ended["status"])
    if forwarded:  # the command died of the signal the caller got: so does the caller
        signal.signal(forwarded[-1], signal.SIG_DFL)
        os.kill(os.getpid(), forwarded[-1])
    sys.stderr.write(
        f"The command's process (pid {child}) ended without an exit status (killed?): run "
        f"it again, or with {WARM_ENV}=0 to run it without the warm server.\n"
    )
    return 1


def _peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
    )
    return int(struct.unpack("3i", credentials)[1])


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _start_server(path: Path) -> None:
    """Start the server for ``path`` in the background (nothing waits for it)."""
    import subprocess

    if not (_private_dir(path.parent) and _private_dir(warm_dir())):
        return
    with contextlib.suppress(OSError), _lock_of(path).with_suffix(".log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, os.fspath(ROOT / "run.py")],
            env={**os.environ, SERVE_ENV: os.fspath(path)},
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


# --------------------------------------------------------------------------- server
def _serve(path: Path) -> tuple[socket.socket, dict[str, Any], list[int]]:
    """Import the project, then fork a child per command until idle or outdated. Returns
    only in a child: its connection, request and file descriptors."""
    import fcntl
    import gc
    import logging

    # its own logger: the root logger's set-up is the commands' (a child inherits it)
    logger = logging.getLogger("cli.warm.server")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s warm server: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    lock = _lock_of(path).open("a+")  # held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(0)  # another command started the same server a moment ago
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    held = os.fstat(lock.fileno()).st_ino  # its state directory deleted: no one can stop it
    with contextlib.suppress(OSError):
        others = [entry for entry in _running_servers() if entry[1] != os.getpid()]
        _clear_dead_sockets(path.parent)
        if len(others) >= MAX_SERVERS:  # the one whose log was written longest ago
            oldest = min(others, key=lambda entry: entry[0].with_suffix(".log").stat().st_mtime)
            logger.info("stopping the warm server pid %d: %d serve", oldest[1], len(others) + 1)
            os.kill(oldest[1], signal.SIGTERM)
    files = files_key()
    started = time.monotonic()
    _preload()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a server killed without cleaning up left it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(64)
    listener.settimeout(LOOK_SECONDS)
    own = path.stat().st_ino  # the socket file's (a stale one is replaced by another)
    logger.info("pid %d serving %s (imports took %.1f s)", os.getpid(), path.name,
                time.monotonic() - started)  # fmt: skip
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the commands
    gc.freeze()  # the imports stay shared with every child, not copied on write
    last = time.monotonic()
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                if time.monotonic() - last > IDLE_SECONDS:
                    logger.info("idle for %d s: leaving", IDLE_SECONDS)
                    break
                if (
                    files_key() != files
                    or not _is_bound_here(path, own)
                    or not _is_bound_here(_lock_of(path), held)
                ):
                    logger.info("the project's files, the socket or the lock changed: leaving")
                    break
                continue
            last = time.monotonic()
            forked = _fork(connection, logger)
            if forked is not None:
                listener.close()
                lock.close()
                return connection, *forked
            connection.close()
    except _StopRequestedError:
        logger.info("stopped")
    if _is_bound_here(path, own):
        path.unlink()
    handler.flush()
    # no interpreter teardown: finalising thousands of modules took seconds on a busy
    # machine, and `warm --stop` waits for the lock, released by the exit
    os._exit(0)


class _StopRequestedError(Exception):
    """SIGTERM reached the server (``run.py warm --stop``)."""


def _stop(_signum: int, _frame: Any) -> None:
    raise _StopRequestedError


def _preload() -> None:
    """Import what commands import, opening no ZenML store (the command's to open)."""
    import importlib
    import logging

    from tabular_mlops.adapters.compat import (
        activate_integrations_once,
        no_code_repository_lookup,
        skip_bentoml_integration,
    )

    with no_code_repository_lookup(os.fspath(ROOT)):
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception as exc:  # a command importing it reports it: not the server's
                logging.getLogger("cli.warm.server").warning("not preloaded: %s: %s", name, exc)
        skip_bentoml_integration()
        activate_integrations_once()  # here, for every command the server forks
        from zenml.integrations.registry import integration_registry

        integration_registry.activate_integrations()


def _clear_dead_sockets(directory: Path) -> None:
    """Remove the sockets in ``directory`` that nobody listens on: what servers killed
    with ``kill -9`` left, also those of checkouts or state directories deleted since."""
    for stale in directory.glob("*.sock"):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(stale))
        except ConnectionRefusedError:
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # busy, or not ours to judge
        finally:
            probe.close()


def _is_bound_here(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except OSError:
        return False


def _fork(connection: socket.socket, logger: Any) -> tuple[dict[str, Any], list[int]] | None:
    """Read a command and fork; in the child, its request and descriptors."""
    fds: list[int] = []
    try:
        if _peer_uid(connection) != os.getuid():
            logger.warning("refused a connection from another user")
            return None
        connection.settimeout(10)
        header, fds, _, _ = socket.recv_fds(connection, 4, 3)
        if not header and not fds:
            return None  # another server looking whether this one is alive
        if len(header) != 4 or len(fds) != 3:
            raise ValueError("not a command")
        size = struct.unpack("!I", header)[0]
        body = b""
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("the command was cut short")
            body += chunk
        request = json.loads(body)
        connection.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
    except (OSError, ValueError) as exc:
        logger.warning("a command could not be started: %s", exc)
        for fd in fds:
            os.close(fd)
        return None
    if child == 0:
        return request, fds
    for fd in fds:
        os.close(fd)
    argv = request.get("argv") or []
    logger.info("pid %d runs %s", child, argv[1] if len(argv) > 1 else "run.py")  # no values
    return None


def _run_forked(connection: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """The child: become the caller's command, then run it as ``run.py`` would."""
    import threading

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    ignored = set(request.get("ignored") or [])
    for name in FORWARDED:  # as the caller has them, whatever the server was started with
        default = signal.default_int_handler if name == "SIGINT" else signal.SIG_DFL
        signal.signal(getattr(signal, name), signal.SIG_IGN if name in ignored else default)
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        with contextlib.suppress(AttributeError):  # as a fresh interpreter buffers it
            sys.stdout.reconfigure(line_buffering=sys.stdout.isatty())  # type: ignore[union-attr]
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        connection.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    except (OSError, KeyError, TypeError, ValueError):
        os._exit(1)  # nothing ran: the caller, told no pid, runs the command itself
    reported: list[int] = []

    def end_with_caller() -> None:
        """The caller went away (killed, its terminal closed): so does the command."""
        with contextlib.suppress(OSError):
            connection.recv(1)
        if not reported:  # as a terminal's hang-up would, unless the caller ignored it
            os.kill(os.getpid(), signal.SIGKILL if "SIGTERM" in ignored else signal.SIGTERM)

    threading.Thread(target=end_with_caller, daemon=True).start()

    def report(status: int) -> None:
        reported.append(status)
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps({"status": status}).encode() + b"\n")

    from cli.main import main

    main(report=report)


def _warm_command(args: list[str]) -> int:
    """``run.py warm --status | --stop``: this checkout's servers."""

    if args not in (["--status"], ["--stop"]):
        sys.stderr.write(
            "Usage: python run.py warm --status | --stop\n"
            "  --status  list this checkout's warm command servers\n"
            "  --stop    stop them (the next command runs in its own process and starts one)\n"
        )
        return 0 if args in (["-h"], ["--help"]) else 2
    current = socket_path()
    found = 0
    for lock_path, pid in _running_servers():
        found += 1
        socket_file = sockets_dir() / f"{lock_path.stem}.sock"
        mark = " (this shell's)" if current == socket_file else ""
        if args == ["--status"]:
            print(f"warm server pid {pid}: {socket_file}{mark}")
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if _wait_released(lock_path):
            print(f"stopped the warm server pid {pid}")
        else:
            print(f"asked the warm server pid {pid} to stop; it is still running")
    if not found:
        print(f"No warm server runs for this checkout ({warm_dir()}).")
    return 0


def _running_servers() -> list[tuple[Path, int]]:
    """This checkout's live servers, by lock file and pid; what servers that are gone
    left behind (lock, socket, log) is removed on the way."""
    import fcntl

    running = []
    for lock_path in sorted(warm_dir().glob("*.lock")):
        with lock_path.open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                text = lock.read().strip()
                running.append((lock_path, int(text) if text.isdigit() else 0))
                continue
            for leftover in (
                lock_path,
                lock_path.with_suffix(".log"),
                sockets_dir() / f"{lock_path.stem}.sock",
            ):
                leftover.unlink(missing_ok=True)
    return running


def _wait_released(lock_path: Path, seconds: float = 30.0) -> bool:
    """Whether the server holding ``lock_path`` let it go (exited) within ``seconds``."""
    import fcntl

    deadline = time.monotonic() + seconds
    with lock_path.open("a+") as lock:
        while time.monotonic() < deadline:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                time.sleep(0.05)
            else:
                return True
    return False
