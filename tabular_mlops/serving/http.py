"""uvicorn's HTTP protocol with a header timeout, for every server of the project (each
version's, the router's, the stable address's).

uvicorn closes a kept-alive connection that stays idle after an answer, but
nothing else: a connection that never sends a request, or sends its headers a
byte at a time, is held for ever (550 of them held for a minute were measured
against the router). Here a connection must complete a request's headers
within ``HEADER_TIMEOUT_SECONDS`` of opening, or of its previous answer, or it
is closed; a request whose headers came is never cut short.

What it costs a request is two attribute writes: each connection has one timer,
which looks every ``HEADER_TIMEOUT_SECONDS / 2`` s whether the connection has
been waiting for headers too long, instead of a timer armed and cancelled per
request (which cost about a tenth of the single-row throughput under wrk).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: how long a connection may take to send a request's headers
HEADER_TIMEOUT_SECONDS = 10.0
#: what servers pass to uvicorn as ``http=`` (a string: it travels to spawned workers)
PROTOCOL = "tabular_mlops.serving.http:HeaderTimeoutProtocol"


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` that closes a connection whose headers do not come in time."""

    _check: asyncio.TimerHandle | None = None
    #: since when the connection waits for a request's headers (None: a request is under way)
    _waiting_since: float | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._check = self.loop.call_later(HEADER_TIMEOUT_SECONDS / 2, self._look)

    def on_headers_complete(self) -> None:
        self._waiting_since = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._check is not None:
            self._check.cancel()
            self._check = None
        super().connection_lost(exc)

    def _look(self) -> None:
        self._check = None
        if self.transport.is_closing():
            return
        since = self._waiting_since
        idle = self.cycle is None or self.cycle.response_complete  # no request under way
        if since is not None and idle and self.loop.time() - since >= HEADER_TIMEOUT_SECONDS:
            self.transport.close()
            return
        self._check = self.loop.call_later(HEADER_TIMEOUT_SECONDS / 2, self._look)
