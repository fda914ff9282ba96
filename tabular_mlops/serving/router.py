"""The model's stable address: a small front process that forwards to the live service.

Why a front process: a release starts the new version beside the old one, on a
port of its own, and smoke-tests it there; clients must not follow that port.
The router keeps the address (``serving.port``, 127.0.0.1:3000 by default) for
the model's whole life, and a release only changes where it forwards:

- the routes live in a JSON file (:class:`Routes`); ``SIGHUP`` makes the router
  read it again, and the switch is one assignment in its event loop, so every
  request goes wholly to the old or wholly to the new upstream;
- requests already sent to the old upstream finish there: its connection pool
  is closed once its last request has answered, and ``GET /-/routes`` shows
  what is still draining, so the deployment stops the old service only then;
- a request that could not reach its upstream at all (refused, or the
  connection closed before anything was sent back) is tried once more on the
  upstream the routes name now, which is what a switch in flight needs.

Measured on 2 cores (docs/benchmarks.md), the hop costs about a third of a
millisecond per request; one asyncio process with keep-alive pools forwards
several thousand requests a second, more than the model service behind it
answers. The same routes file carries weights so traffic can be split between
versions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

#: the router's own endpoints; everything else is forwarded
ROUTES_PATH = "/-/routes"
#: request headers passed upstream (the rest stay at the edge)
FORWARDED = frozenset(
    {"content-type", "content-length", "accept", "x-request-id", "x-request-source",
     "x-source-token"}
)  # fmt: skip
#: response headers the router sets itself or that belong to one connection
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server",
     "upgrade", "proxy-authenticate", "trailer", "te"}
)  # fmt: skip
#: all request headers together may take at most this many bytes (431 otherwise)
MAX_HEADER_BYTES = 8192
#: a request body larger than this is refused before it is read (the service's own
#: limit is lower and names the row count; this one protects the router)
MAX_BODY_BYTES = 64 * 1024 * 1024

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Upstream(BaseModel):
    url: str
    model_version: str
    weight: float = Field(default=1.0, ge=0)


class Routes(BaseModel):
    """What the router forwards to; written atomically by the deployment, read on SIGHUP."""

    model_name: str
    generation: int = 0
    upstreams: list[Upstream] = Field(min_length=1)


def write_routes(path: Path, routes: Routes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(routes.model_dump_json(indent=2))
    temporary.replace(path)


class _Pool:
    """One upstream's keep-alive connections and the requests in flight on them."""

    def __init__(self, upstream: Upstream) -> None:
        import aiohttp

        self.upstream = upstream
        self.session = aiohttp.ClientSession(
            base_url=upstream.url,
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=60, connect=2),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        self.in_flight = 0


def _json(status: int, payload: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return status, [(b"content-type", b"application/json")], json.dumps(payload).encode()


class Router:
    """The ASGI application of the front process."""

    def __init__(self, routes_file: Path) -> None:
        self.routes_file = routes_file
        self.routes: Routes | None = None
        self.pool: _Pool | None = None
        self.draining: list[_Pool] = []
        self.forwarded = 0

    # --- routes -----------------------------------------------------------------
    def reload(self) -> None:
        """Read the routes file and switch to it; a bad file keeps the current routes."""
        try:
            routes = Routes.model_validate_json(self.routes_file.read_text())
        except (OSError, ValueError) as exc:
            logger.error("kept the current routes: %s is unreadable (%s)", self.routes_file, exc)
            return
        live = routes.upstreams[0]  # one upstream until traffic is split
        previous = self.pool
        if previous is not None and previous.upstream == live:
            self.routes = routes
            return
        self.routes, self.pool = routes, _Pool(live)
        if previous is not None:
            self.draining.append(previous)
            self._close_if_idle(previous)
        logger.info(
            "generation %s: forwarding to %s (version %s)",
            routes.generation,
            live.url,
            live.model_version,
        )

    def _close_if_idle(self, pool: _Pool) -> None:
        if pool in self.draining and pool.in_flight == 0:
            self.draining.remove(pool)
            asyncio.get_running_loop().create_task(pool.session.close())

    def status(self) -> dict[str, Any]:
        return {
            "model_name": self.routes.model_name if self.routes else None,
            "generation": self.routes.generation if self.routes else None,
            "live": self.pool.upstream.model_dump() if self.pool else None,
            "draining": [pool.upstream.url for pool in self.draining],
            "in_flight": self.pool.in_flight if self.pool else 0,
            "forwarded": self.forwarded,
            "pid": os.getpid(),
        }

    # --- ASGI ---------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == ROUTES_PATH:
            status, headers, body = _json(200, self.status())
        else:
            status, headers, body = await self._forward(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.reload()
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for pool in [*self.draining, *([self.pool] if self.pool else [])]:
                    await pool.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(
        self, scope: dict[str, Any], receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        import aiohttp

        headers: dict[str, str] = {}
        size = 0
        for name, value in scope["headers"]:
            size += len(name) + len(value)
            key = name.decode("latin-1")
            if key in FORWARDED:
                headers[key] = value.decode("latin-1")
        if size > MAX_HEADER_BYTES:
            return _json(
                431,
                {
                    "error": "request headers too large",
                    "detail": [{"field": "(headers)", "problem": f"over {MAX_HEADER_BYTES} bytes"}],
                },
            )
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _json(
                413,
                {
                    "error": "request too large",
                    "detail": [{"field": "(body)", "problem": f"over {MAX_BODY_BYTES} bytes"}],
                },
            )
        body = await _read_body(receive)
        path = scope["raw_path"].decode("latin-1") or scope["path"]
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode("latin-1")
        for attempt in (1, 2):
            pool = self.pool
            if pool is None:
                break
            pool.in_flight += 1
            try:
                async with pool.session.request(
                    scope["method"], path, data=body or None, headers=headers
                ) as response:
                    answer = await response.read()
                    self.forwarded += 1
                    kept = [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in response.headers.items()
                        if k.lower() not in HOP_BY_HOP
                    ]
                    return response.status, kept, answer
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                # nothing came back: the request did not reach a model, so trying the
                # upstream the routes name now cannot answer it twice
                logger.warning("attempt %s: %s did not answer: %s", attempt, pool.upstream.url, exc)
            except (aiohttp.ClientError, TimeoutError) as exc:
                return _json(
                    502, {"error": "the model service failed to answer", "detail": str(exc)}
                )
            finally:
                pool.in_flight -= 1
                self._close_if_idle(pool)
        return _json(503, {"error": "the model service is not answering; try again shortly"})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def main() -> None:
    """``python -m tabular_mlops.serving.router ROUTES_FILE HOST PORT``."""
    import sys

    import uvicorn

    routes_file, host, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvicorn.run(
        Router(routes_file),
        host=host,
        port=port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
