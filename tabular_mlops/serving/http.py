"""uvicorn's HTTP protocol with a header timeout, for every server of the project (each
version's, the router's, the stable address's).

uvicorn closes a kept-alive connection that stays idle after an answer, but
nothing else: a connection that never sends a request, or sends its headers a
byte at a time, is held for ever (550 of them held for a minute were measured
against the router). Here a connection must complete a request's headers
within ``HEADER_TIMEOUT_SECONDS`` of opening, or of its previous answer, or it
is closed; a request whose headers came is never cut short.
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

    _headers_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._wait_for_headers()

    def on_headers_complete(self) -> None:
        self._stop_waiting()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _wait_for_headers(self) -> None:
        self._stop_waiting()
        self._headers_timer = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._too_slow)

    def _stop_waiting(self) -> None:
        if self._headers_timer is not None:
            self._headers_timer.cancel()
            self._headers_timer = None

    def _too_slow(self) -> None:
        self._headers_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()
