"""Loopback networking shared by every local server this project starts and waits for."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first probing: `deploy --stop` never does (80 ms)
    import httpx

#: every local server binds here, never a public interface
HOST = "127.0.0.1"


def free_port(avoid: Collection[int] = ()) -> int:
    """A TCP port on ``HOST`` that nothing listens on right now, none of ``avoid``.

    ``avoid`` holds ports that are configured but not bound yet (a model's stable address
    before its first release): the kernel may hand out any free port, and once gave a
    router's own port the number of the stable address it was about to bind, so it
    could not bind its own."""
    while (port := any_port()) in avoid:
        pass
    return port


def any_port() -> int:
    """A TCP port on ``HOST`` that nothing listens on right now, as the kernel picks it."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@functools.cache
def probe_client() -> httpx.Client:
    """The client that checks whether servers answer: ``httpx.get``'s settings, built once
    (each ``httpx.get`` builds a client and loads the CA bundle: 31 ms, 18 times a deploy)
    and without keep-alive, so a probe never reuses a connection to a server since gone."""
    import httpx

    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


#: how long a probe waits for a server's answer before the server counts as not answering:
#: a dead one refuses the connection at once, while a live one on a busy machine took
#: seconds, and a decision on a shorter wait (a deploy replaced a healthy service, a
#: router was stopped, a command refused to start) depended on how busy the machine was
PATIENCE_SECONDS = 10.0


def answers(url: str, timeout: float = PATIENCE_SECONDS) -> bool:
    """Whether ``url`` answers 200 to a GET."""
    import httpx

    try:
        return probe_client().get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def answer_of(
    url: str, timeout: float = PATIENCE_SECONDS, token: str | None = None
) -> dict[str, Any] | None:
    """The JSON object ``url`` answers to a GET with 200 (sent with ``token`` as a bearer
    credential, if given); None for anything else."""
    import httpx

    headers = {"authorization": f"Bearer {token}"} if token else None
    try:
        response = probe_client().get(url, timeout=timeout, headers=headers)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if response.status_code == 200 and isinstance(body, dict) else None


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    gave_up: Callable[[], bool] = lambda: False,
    interval: float = 0.2,
) -> bool:
    """Poll ``ready`` until it holds (True), ``gave_up`` holds or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if gave_up():
            return False
        time.sleep(interval)
    return ready()


def wait_for_url(url: str, timeout: float, gave_up: Callable[[], bool] = lambda: False) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` seconds, probing until then.

    No probe outlives the deadline: a server that accepts connections before
    it can answer (BentoML binds its socket first) does not stretch the wait.
    """
    deadline = time.monotonic() + timeout

    def ready() -> bool:
        left = deadline - time.monotonic()
        return left > 0 and answers(url, timeout=min(2.0, left))

    return wait_until(ready, timeout, gave_up)
