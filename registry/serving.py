"""How the hub is served over HTTP: uvicorn, with deadlines for slow clients and a long keep-alive.

uvicorn drops an idle keep-alive connection after `timeout_keep_alive` (5 s by default) but has
no deadline for a request's headers: any byte received cancels its timer, so a client trickling
a byte every few seconds, or one that connects and sends nothing, holds its connection for ever
(slowloris). `HeaderDeadlineProtocol` closes a connection whose request line and headers are not
complete `header_timeout_s` after their first byte (or after the connection opened). Bodies
have their own idle deadline in `registry.api.body_limit`.

The keep-alive is long (75 s) on purpose: whoever closes an idle connection first races the
other side's next request on it, and a request sent into a connection the server is closing is
reset (the client sees ECONNRESET, not an answer). Proxies and clients close idle connections
after 60 s or less, so with a longer server timeout they, not the server, close first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionDeadlines:
    """Seconds a connection may spend idle between requests, and on one request's headers."""

    keep_alive_s: int = 75
    header_timeout_s: float = 30.0


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline on each request's headers (`header_timeout_s`)."""

    header_timeout_s: float = ConnectionDeadlines.header_timeout_s
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is None and self.conn.their_state is h11.IDLE:
            self._arm_header_deadline()  # the first byte of the next request on this connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._drop_if_idle)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _drop_if_idle(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    deadlines: ConnectionDeadlines = ConnectionDeadlines(),
    **options: object,
) -> uvicorn.Config:
    """The uvicorn configuration every hub server uses (`compeft-hub serve`, tests, benches)."""
    protocol = type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_s": deadlines.header_timeout_s},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=deadlines.keep_alive_s,
        **options,  # type: ignore[arg-type]
    )
