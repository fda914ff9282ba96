"""The stable address's hand-over (``serving/stable.py``): real sockets, one process."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest

from tabular_mlops.serving import stable
from tabular_mlops.serving.stable import Holder, Owner, StableListener


def _app(name: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": name.encode()})

    return app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_holder_hands_a_copy_of_the_socket_to_another_process(tmp_path):
    sock = stable.bind("127.0.0.1", 0)
    broker = stable.Broker(sock)
    try:
        holder = Holder(pid=1, port=1, generation=None, accepting=False, open=0,
                        broker=broker.address)  # fmt: skip
        (tmp_path / "holders").mkdir()
        (tmp_path / "holders" / "1.json").write_text(holder.model_dump_json())
        copy = stable.fetch(tmp_path)
        assert copy is not None
        assert copy.getsockname() == sock.getsockname()  # the same socket, not a new one
        copy.close()
    finally:
        broker.close()
        sock.close()


def test_the_port_of_another_process_is_refused_with_the_cause():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            stable.bind("127.0.0.1", taken.getsockname()[1])


def test_the_router_stands_in_whenever_no_worker_of_the_owner_accepts(tmp_path):
    (tmp_path / "holders").mkdir()
    owner = Owner(generation=3, port=5000)
    assert stable.router_owner(tmp_path, None, 7000)  # nobody named yet
    assert stable.router_owner(tmp_path, Owner(generation=3, port=7000), 7000)
    assert stable.router_owner(tmp_path, owner, 7000)  # the version is not there (yet)
    import os

    worker = Holder(pid=os.getpid(), port=5000, generation=3, accepting=True, open=2, broker="")
    (tmp_path / "holders" / "w.json").write_text(worker.model_dump_json())
    assert not stable.router_owner(tmp_path, owner, 7000)
    dead = worker.model_copy(update={"pid": 2**22 + 1})  # no such process
    (tmp_path / "holders" / "w.json").write_text(dead.model_dump_json())
    assert stable.router_owner(tmp_path, owner, 7000)
    assert not (tmp_path / "holders" / "w.json").exists()  # a dead holder's file goes


def test_the_address_follows_the_owner_file_and_old_connections_are_closed(tmp_path: Path):
    """Two processes' worth of listeners in one loop: the owner file moves the address
    from one to the other; a kept-alive connection to the old one is told to close,
    and a new connection reaches the new one; no request fails on the way."""
    port = _free_port()

    async def scenario() -> None:
        old = StableListener(_app("old"), tmp_path, 1, bind_to=("127.0.0.1", port))
        new = StableListener(_app("new"), tmp_path, 2)
        stable.write_owner(tmp_path, Owner(generation=1, port=1))
        await old.start()
        await new.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/")).text == "old"
                stable.write_owner(tmp_path, Owner(generation=2, port=2))
                await asyncio.sleep(stable.POLL_SECONDS * 4)
                kept = await client.get("/")  # on the old connection
                assert kept.text == "old" and kept.headers["connection"] == "close"
                assert (await client.get("/")).text == "new"
            holders = {h.port: h for h in stable.holders(tmp_path)}
            assert holders[2].accepting and not holders[1].accepting
            await asyncio.sleep(stable.POLL_SECONDS * 4)
            assert stable.describe(tmp_path)["accepting"] == [2]
        finally:
            await new.stop()
            await old.stop()
        assert stable.holders(tmp_path) == []

    asyncio.run(scenario())


def test_the_uvicorn_pieces_it_serves_with_are_where_it_expects_them():
    """``StableListener`` serves the stable socket with uvicorn's own HTTP protocol, as
    uvicorn serves a port: this fails by name when an upgrade moves one of them."""
    import inspect

    import uvicorn
    from uvicorn.server import ServerState

    from tabular_mlops.serving.http import PROTOCOL

    config = uvicorn.Config(_app("x"), lifespan="off", interface="asgi3", http=PROTOCOL)
    config.load()
    parameters = inspect.signature(config.http_protocol_class).parameters
    assert {"config", "server_state", "app_state"} <= set(parameters)
    assert hasattr(ServerState(), "connections")
    for hook in ("shutdown", "connection_made", "connection_lost", "on_headers_complete",
                 "on_response_complete"):  # fmt: skip
        assert callable(getattr(config.http_protocol_class, hook, None)), hook


def test_a_holder_that_cannot_write_its_file_still_accepts(tmp_path, monkeypatch, caplog):
    """A full disk under the state directory: the address is served all the same, the
    problem said once, and the holder file written once the disk has room again."""
    import errno

    port = _free_port()
    real = stable.write_atomically

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    async def scenario() -> None:
        stable.write_owner(tmp_path, Owner(generation=1, port=1))
        monkeypatch.setattr(stable, "write_atomically", full)
        listener = StableListener(_app("one"), tmp_path, 1, bind_to=("127.0.0.1", port))
        await listener.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/")).text == "one"
            await asyncio.sleep(stable.POLL_SECONDS * 3)
            assert stable.holders(tmp_path) == []
            monkeypatch.setattr(stable, "write_atomically", real)
            await asyncio.sleep(stable.POLL_SECONDS * 3)
            [holder] = stable.holders(tmp_path)
            assert holder.accepting
        finally:
            await listener.stop()

    asyncio.run(scenario())
    said = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(said) == 1 and "No space left on device" in said[0].getMessage()


def test_a_connection_that_does_not_send_its_headers_in_time_is_closed(tmp_path, monkeypatch):
    """A slow-headers client (or one that never sends a request) is closed after the
    header timeout; a client that sends a request in time is answered."""
    from tabular_mlops.serving import http

    monkeypatch.setattr(http, "HEADER_TIMEOUT_SECONDS", 0.3)
    port = _free_port()

    async def scenario() -> tuple[bytes, bytes, bytes]:
        stable.write_owner(tmp_path, Owner(generation=1, port=1))
        listener = StableListener(_app("one"), tmp_path, 1, bind_to=("127.0.0.1", port))
        await listener.start()
        try:
            silent_reader, _ = await asyncio.open_connection("127.0.0.1", port)
            slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
            slow_writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never the blank line
            quick_reader, quick_writer = await asyncio.open_connection("127.0.0.1", port)
            quick_writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            answered = await asyncio.wait_for(quick_reader.read(200), 5)
            silent = await asyncio.wait_for(silent_reader.read(100), 5)  # b"": closed
            slow = await asyncio.wait_for(slow_reader.read(100), 5)
            return answered, silent, slow
        finally:
            await listener.stop()

    answered, silent, slow = asyncio.run(scenario())
    assert answered.startswith(b"HTTP/1.1 200") and b"\r\none\r\n" in answered
    assert silent == b"" and slow == b""
