"""The measured fast path: an idle socket's frame written in the publisher's own step (PERFORMANCE.md).

With uvicorn's default (sans-I/O) WebSocket protocol a text frame can be written without awaiting: one task
step less per token than waking the socket's writer. With another server or protocol every frame goes through
the writer; the frames are the same either way.
"""

from collections.abc import Callable
from typing import Any, Protocol

from dataagent.adapters.http.websocket.frames import encode
from dataagent.application.streams import Item
from dataagent.domain.events import EventType

try:  # uvicorn's default WebSocket protocol: its frames can be written without awaiting (see send_now)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _SansIO

    SANSIO: type[Any] | None = _SansIO
except ImportError:  # pragma: no cover - another server, or a uvicorn without it: frames go through the writer
    SANSIO = None

RUN_STARTED = EventType.RUN_STARTED.value  # each run's first event: the writer checks the owner again there
DONE = EventType.DONE.value  # each run's last event: the fast path's frames are reported there


class Direct(Protocol):
    """What the fast path reads of a socket (connection.Connection)."""

    _protocol: Any
    owned: bool
    direct_frames: int

    def report_frames(self) -> None: ...


def protocol_of(raw_send: Callable[..., Any]) -> Any:
    """The server's protocol object behind its ASGI `send`, if it is the sans-I/O one (else None)."""
    protocol = getattr(raw_send, "__self__", None)
    return protocol if SANSIO is not None and isinstance(protocol, SANSIO) else None


def send_now(self: Direct, item: Item) -> bool:
    """Write a frame from the publisher's step, when the socket takes it without waiting: one task step
    less per token than waking the writer (PERFORMANCE.md). What the server's own `send` does for a text
    frame, minus its wait for writability: False (the writer sends it) whenever that wait would be needed,
    the session's ownership is still to be checked, or anything is amiss.

    A method of Connection (`Connection._send_now`): a bound method, as cheap to call as before the split."""
    protocol = self._protocol
    try:  # never raise into the publisher (a run): on anything unexpected, the writer sends it
        if protocol is None or not protocol.writable.is_set() or protocol.disconnected or protocol.close_sent \
                or not protocol.handshake_complete or protocol.initial_response is not None:
            return False
        ending = False
        if not isinstance(item, str):
            if not self.owned or item.event_type == RUN_STARTED:
                return False
            ending = item.event_type == DONE
            item = encode(item)
        protocol.conn.send_text(item.encode())
    except Exception:  # noqa: BLE001 - the connection is closing (or the server changed): writer's turn
        return False
    try:  # the frame is taken: a broken socket loses it, as any send would (no `suppress`: 5% of the CPU)
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
    except Exception:  # noqa: BLE001, S110
        pass
    self.direct_frames += 1  # reported at the run's `done`, with the writer's next batch or at its end
    if ending:
        self.report_frames()
    return True
