"""uvicorn's HTTP protocols with a bound on the request head: its time and its bytes, and on connections.

uvicorn bounds neither the time a client may take to send a request's head (a client sending a header line
every few seconds keeps its connection, and `limit_concurrency` only counts it) nor, with httptools, the
head's size. These subclasses close a connection whose request head is not complete within `head_timeout_s`
of its first byte (or of the connection's opening) with `408`, and one whose head passes `max_head_bytes`
with `431` (`400` with h11); and they apply `max_connections` as uvicorn's `limit_concurrency` (503 past
it) when uvicorn was not given a smaller one. The limits come from the app's lifespan state (STATE_KEY, see
entrypoints/app.py), so every start form uses the same DATAAGENT_* settings:

    dataagent-server                      (uses them itself)
    uvicorn dataagent_server.main:app --http dataagent.adapters.http.protocols:BoundedHttpProtocol
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

STATE_KEY = "dataagent.http_limits"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    head_timeout_s: float = 10.0
    max_head_bytes: int = 64 * 1024
    max_connections: int | None = None


_REFUSALS = {
    408: b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    431: b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
}


class _HeadBound:
    """The head timer and byte count shared by both protocols (a mixin over a uvicorn HTTP protocol)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    limit_concurrency: int | None
    _limits: HttpLimits
    _head_timer: asyncio.TimerHandle | None
    _head_bytes: int

    def _init_limits(self, app_state: dict[str, Any]) -> None:
        limits = app_state.get(STATE_KEY)
        self._limits = limits if isinstance(limits, HttpLimits) else HttpLimits()
        most = self._limits.max_connections
        if most is not None and (self.limit_concurrency is None or self.limit_concurrency > most):
            self.limit_concurrency = most
        self._head_timer, self._head_bytes = None, 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._head_started()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)  # type: ignore[misc]

    def _head_started(self) -> None:
        if self._head_timer is None:
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(self._limits.head_timeout_s, self._refuse, 408)

    def _head_received(self, size: int) -> None:
        """`size` more bytes of an incomplete head arrived."""
        self._head_started()
        self._head_bytes += size
        if self._head_bytes > self._limits.max_head_bytes:
            self._refuse(431)

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int) -> None:
        self._head_done()
        if not self.transport.is_closing():
            self.transport.write(_REFUSALS[status])
            self.transport.close()


class BoundedH11Protocol(_HeadBound, H11Protocol):
    """With h11 the head's size is h11's own bound (set to `max_head_bytes`); past it uvicorn answers 400."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._init_limits(self.app_state)
        self.conn = h11.Connection(h11.SERVER, self._limits.max_head_bytes)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._head_received(len(data))  # a request's head has begun and is not complete
        else:
            self._head_done()


BoundedHttpProtocol: type[asyncio.Protocol]

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional in uvicorn; h11 is always there
    BoundedHttpProtocol = BoundedH11Protocol
else:

    class BoundedHttpToolsProtocol(_HeadBound, HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._init_limits(self.app_state)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_started()

        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_timer is not None and not self.transport.is_closing():
                self._head_received(len(data))

    BoundedHttpProtocol = BoundedHttpToolsProtocol
