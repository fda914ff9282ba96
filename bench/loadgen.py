"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending
the same POST back to back, for a fixed duration and at most a fixed number of requests.

It writes raw bytes on asyncio streams (uvloop when available) so that the generator,
which shares the machine's cores with the server, costs as little as possible.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0

    def row(self, label: str) -> str:
        return (
            f"{label:<44}{self.throughput:>10.0f}{self.percentile(50):>10.2f}"
            f"{self.percentile(99):>10.2f}{self.errors:>8}"
        )


HEADER = f"{'':<44}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"


async def _connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    budget: list[int],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            status_ok = head[9:12] == b"200"
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            if not status_ok:
                errors[0] += 1
    finally:
        writer.close()


async def _run(
    host: str,
    port: int,
    path: str,
    body: bytes,
    connections: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors = [0]
    budget = [max_requests]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(
            _connection(host, port, request, deadline, budget, latencies, errors)
            for _ in range(connections)
        )
    )
    return LoadResult(len(latencies), errors[0], time.perf_counter() - started, latencies)


def run_load(
    url: str,
    body: bytes,
    connections: int,
    seconds: float = 10.0,
    max_requests: int = 200_000,
    warmup_seconds: float = 2.0,
) -> LoadResult:
    """Load ``url`` (http://127.0.0.1:PORT/path only) and return what was measured."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"{url}: the load generator only targets this machine (127.0.0.1)")
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run(host, int(port), "/" + path, body, connections, warmup_seconds, max_requests))
    return asyncio.run(_run(host, int(port), "/" + path, body, connections, seconds, max_requests))
