"""The model's stable address without a hop: one listening socket, handed between processes.

The stable address (``127.0.0.1:<port>`` of the ``tabular_local`` model
deployer) is one listening socket, bound once, whose file descriptor every
process that serves the address holds a copy of: the router, and each worker
of the live version. All copies share one accept queue, so a connection waits
in it until *some* process accepts it; which ones do is decided by the owner
file, ``<dir>/owner.json`` (``{"generation", "port"}``), written by the router
from its routes:

- one version and no experiment: the live version's own port, so its workers
  accept on the stable socket themselves and clients reach them without a hop;
- a rollout (two versions): the router's own port, so it routes by the plan.

Each holder follows the owner file every ``POLL_SECONDS``: it starts accepting
when it is named, and when it no longer is, it stops accepting (the queue is
left to the others, never closed, so no connection is lost), answers every
request still arriving on its stable connections with ``Connection: close``,
and lets idle ones end at the keep-alive timeout; its holder file,
``<dir>/holders/<pid>-<port>.json``, says whether it accepts and how many stable
connections it still has, so a deployment stops an old version only when it
has none. The router also accepts whenever no live worker of the owner does (a
version that died, one that is still starting): a request then goes through
it to the routes, as before, instead of waiting.

A process gets its copy from another holder (``SCM_RIGHTS`` over a Unix
socket, the holder's *broker*, named in its holder file); only when no holder
is left does the router bind the port again. So the address outlives any one
process: a killed router, a killed version.

On Kubernetes none of this runs: a Service is the stable address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tabular_mlops.core.files import write_atomically

logger = logging.getLogger(__name__)

#: the directory of a model's stable address (owner file, holders), set by the deployment
STABLE_DIR_ENV = "TABULAR_STABLE_DIR"
#: how often a holder looks at the owner file
POLL_SECONDS = 0.05
#: an idle connection on the stable socket is closed after this (uvicorn's default)
KEEP_ALIVE_SECONDS = 5
#: connections the stable socket queues while nobody accepts (uvicorn's default)
BACKLOG = 2048

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[..., Awaitable[None]]  # an ASGI application


class Owner(BaseModel):
    """Who accepts on the stable socket: the process listening on ``port`` (its own)."""

    generation: int
    port: int


class Holder(BaseModel):
    """One process holding the stable socket, as it reports itself."""

    pid: int
    port: int
    generation: int | None
    accepting: bool
    open: int
    broker: str


def owner_file(directory: Path) -> Path:
    return directory / "owner.json"


def holders_dir(directory: Path) -> Path:
    return directory / "holders"


def read_owner(directory: Path) -> Owner | None:
    try:
        return Owner.model_validate_json(owner_file(directory).read_text())
    except (OSError, ValidationError):
        return None


def write_owner(directory: Path, owner: Owner) -> None:
    write_atomically(owner_file(directory), owner.model_dump_json())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holders(directory: Path) -> list[Holder]:
    """The live holders of the stable socket; a dead one's file is removed."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in holders_dir(directory).glob("*.json"):
            try:
                holder = Holder.model_validate_json(path.read_text())
            except (OSError, ValidationError):
                continue  # being replaced
            if _alive(holder.pid):
                found.append(holder)
            else:
                path.unlink(missing_ok=True)
    return found


def _broker_address() -> str:
    """A Unix socket address for a broker: abstract on Linux (no file to leave behind)."""
    name = f"tabular-stable-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if sys.platform.startswith("linux"):
        return "\0" + name
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"{name}.sock")


def _peer_uid(connection: socket.socket) -> int | None:
    """The user id of the process at the other end (Linux; an abstract Unix socket has no
    file permissions to keep other users out). None where the platform cannot say: there
    the broker's socket file is the owner's alone (mode 0600)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return int(uid)


class Broker:
    """Hands a copy of ``sock`` to whoever connects to ``address`` (``SCM_RIGHTS``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.address = _broker_address()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.address)
        if not self.address.startswith("\0"):
            Path(self.address).chmod(0o600)
        self.server.listen(16)
        threading.Thread(target=self._serve, name="stable-broker", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return  # closed
            with connection, contextlib.suppress(OSError):
                if _peer_uid(connection) not in (None, os.getuid()):
                    continue  # another user's process gets nothing
                socket.send_fds(connection, [b"1"], [self.sock.fileno()])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        if not self.address.startswith("\0"):
            Path(self.address).unlink(missing_ok=True)


def fetch(directory: Path) -> socket.socket | None:
    """A copy of the stable socket from any live holder's broker, or None."""
    for holder in holders(directory):
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as client:
            client.settimeout(10)  # a dead holder's broker refuses at once; a busy one is slow
            client.connect(holder.broker)
            _, fds, _, _ = socket.recv_fds(client, 16, 1)
            if fds:
                return socket.socket(fileno=fds[0])
    return None


def bind(host: str, port: int) -> socket.socket:
    """A new stable socket on ``host:port`` (OSError when something else has it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def bindable(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` now (a new stable socket could be bound)."""
    try:
        bind(host, port).close()
    except OSError:
        return False
    return True


def direct_owner(directory: Path, owner: Owner | None, own_port: int) -> bool:
    """A version's rule: accept when the owner file names this process's port."""
    return owner is not None and owner.port == own_port


def router_owner(directory: Path, owner: Owner | None, own_port: int) -> bool:
    """The router's rule: accept when named, and whenever no live worker of the named
    version accepts (it died, or is still starting)."""
    if owner is None or owner.port == own_port:
        return True
    return not any(h.accepting and h.port == owner.port for h in holders(directory))


Rule = Callable[[Path, Owner | None, int], bool]


class StableListener:
    """Accepts on the stable socket while ``rule`` says so, in this process's event loop.

    ``app`` is served on it with the same uvicorn protocol as the process's own port;
    ``own_port`` is how the owner file names this process; once ``leaving()`` (its
    server died), it accepts no more.
    """

    def __init__(
        self,
        app: App,
        directory: Path,
        own_port: int,
        rule: Rule = direct_owner,
        bind_to: tuple[str, int] | None = None,
        leaving: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.leaving = leaving
        self.directory = directory
        self.own_port = own_port
        self.rule = rule
        self.bind_to = bind_to
        self.held: socket.socket | None = None
        self.broker: Broker | None = None
        #: this process's accepting copy of the socket, while it accepts
        self.accepting: socket.socket | None = None
        self.reported: tuple[Any, ...] | None = None
        self.generation: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self._unreported = False
        self._protocol: Callable[[], asyncio.Protocol] = asyncio.Protocol
        self._connecting: set[asyncio.Task[Any]] = set()
        self._state: Any = None

    # --- the socket -----------------------------------------------------------------
    def obtain(self) -> socket.socket | None:
        """This process's copy of the stable socket: from a holder, or bound anew when
        ``bind_to`` is given and nobody holds it (OSError when the port is taken)."""
        if self.held is None:
            self.held = fetch(self.directory)
            if self.held is None and self.bind_to is not None:
                self.held = bind(*self.bind_to)
                logger.info("bound the stable address %s:%s", *self.bind_to)
            if self.held is not None:
                self.broker = Broker(self.held)
        return self.held

    # --- serving ----------------------------------------------------------------------
    async def start(self) -> None:
        import uvicorn
        from uvicorn.server import ServerState

        from tabular_mlops.serving.http import PROTOCOL

        config = uvicorn.Config(
            self._closing_when_released,
            lifespan="off",
            interface="asgi3",
            http=PROTOCOL,
            access_log=False,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        config.load()
        self._state = ServerState()
        protocol: Any = config.http_protocol_class  # uvicorn's own, as for its own port
        self._protocol = functools.partial(
            protocol, config=config, server_state=self._state, app_state={}
        )
        await self._follow_once()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _closing_when_released(self, scope: dict[str, Any], receive: Receive,
                                     send: Send) -> None:  # fmt: skip
        """The app, with ``Connection: close`` on every answer once this process no longer
        accepts: its clients' next request opens a connection the owner accepts."""
        if self.accepting is not None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                   (b"connection", b"close")]}  # fmt: skip
            await send(message)

        await self.app(scope, receive, closing)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self._follow_once()
            except Exception:  # one bad look (a file half-written) must not end following
                logger.exception("following the stable address's owner failed; trying again")

    async def _follow_once(self) -> None:
        owner = read_owner(self.directory)
        self.generation = owner.generation if owner else None
        wanted = not self.leaving() and self.rule(self.directory, owner, self.own_port)
        if wanted and self.accepting is None:
            sock = self.obtain()
            if sock is None:
                if not self._warned:
                    logger.warning("no process holds the stable address yet: waiting")
                    self._warned = True
            else:
                self._start_accepting(sock)
                logger.info("pid %s accepts on the stable address", os.getpid())
        elif not wanted and self.accepting is not None:
            self._stop_accepting()
            logger.info("pid %s no longer accepts on the stable address", os.getpid())
        self._report()

    def _start_accepting(self, sock: socket.socket) -> None:
        """Accept one connection per wake-up, not every queued one: a worker busy
        answering comes back later, so the idle one takes the next connections (a
        greedy accept loop, asyncio's or libuv's, lets one worker take a whole burst
        of new connections while the other idles)."""
        self.accepting = sock.dup()  # closing it later closes this copy only
        self.accepting.setblocking(False)
        asyncio.get_running_loop().add_reader(self.accepting.fileno(), self._accept_one)

    def _accept_one(self) -> None:
        if self.accepting is None:
            return
        try:
            connection, _ = self.accepting.accept()
        except (BlockingIOError, InterruptedError):
            return  # another holder took it
        except OSError as exc:  # out of file descriptors, say: the queue keeps it
            logger.warning("accepting on the stable address failed: %s", exc)
            return
        connection.setblocking(False)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.connect_accepted_socket(self._protocol, connection))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def _stop_accepting(self) -> None:
        """Stop accepting; the queue stays, for the others (never closed here)."""
        if self.accepting is not None:
            asyncio.get_running_loop().remove_reader(self.accepting.fileno())
            self.accepting.close()
            self.accepting = None

    @property
    def _holder_file(self) -> str:
        return f"{os.getpid()}-{self.own_port}.json"

    def open_connections(self) -> int:
        return len(self._state.connections) if self._state is not None else 0

    def _report(self) -> None:
        if self.broker is None:
            return
        open_now = self.open_connections()
        key = (self.generation, self.accepting is not None, min(open_now, 1))
        if key == self.reported:
            return
        holder = Holder(pid=os.getpid(), port=self.own_port, generation=self.generation,
                        accepting=self.accepting is not None, open=open_now,
                        broker=self.broker.address)  # fmt: skip
        try:
            write_atomically(holders_dir(self.directory) / self._holder_file,
                              holder.model_dump_json())  # fmt: skip
        except OSError as exc:  # a full disk: serving goes on; said once, tried again
            if not self._unreported:
                logger.warning("cannot write %s's holder file (%s): trying again",
                               os.getpid(), exc)  # fmt: skip
            self._unreported = True
            return
        self._unreported = False
        self.reported = key

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, let the stable connections end, give the socket up.

        Said at once in the holder file, so the router stands in without waiting; a
        busy connection ends after its next answer (``Connection: close``), and those
        still open after ``grace`` (idle ones) are closed then: closing a connection at
        once would race a client sending on it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.accepting is not None:
            self._stop_accepting()
        self._report()
        if self._state is not None:
            deadline = time.monotonic() + grace
            while self._state.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for connection in list(self._state.connections):
                connection.shutdown()
            deadline = time.monotonic() + 1
            while self._state.connections and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        (holders_dir(self.directory) / self._holder_file).unlink(missing_ok=True)
        if self.broker is not None:
            self.broker.close()
            self.broker = None
        if self.held is not None:
            self.held.close()
            self.held = None


def describe(directory: Path) -> dict[str, Any]:
    """Who owns the stable address and who accepts on it (``deploy --status``, tests)."""
    owner = read_owner(directory)
    found = holders(directory)
    return {
        "owner": owner.model_dump() if owner else None,
        "holders": [h.model_dump() for h in found],
        "accepting": sorted({h.port for h in found if h.accepting}),
    }
