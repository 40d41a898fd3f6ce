"""One server-sent event stream (PROTOCOL.md, Server-sent events): a subscriber of the session's events, its
capacity slot, keep-alive timer and send watch, and the response that writes it.

Its head goes through the middleware (request id, CORS); its chunks go to the server's own `send`, as a
WebSocket's frames do (entrypoints/app.py, App). The measured fast path (PERFORMANCE.md): an event that finds the
stream idle is written in the publisher's own step, one HTTP/1.1 chunk straight to uvicorn's transport, when
uvicorn's httptools protocol serves it and the socket takes it without waiting; else the stream's task sends it.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from dataagent.adapters.http.middleware import RAW_SEND_KEY
from dataagent.adapters.http.websocket.frames import encode, error_frame
from dataagent.adapters.http.websocket.watchdog import SendWatchdog
from dataagent.application.capacity import Capacity
from dataagent.application.streams import Item, SlowConsumerError, Subscription, SubscriptionClosedError
from dataagent.application.telemetry import Telemetry
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import EventType, RunEvent

try:  # uvicorn's default HTTP/1.1 protocol: a chunk can be written without awaiting (see `_send_now`)
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle as _Cycle

    CYCLE: type[Any] | None = _Cycle
except ImportError:  # pragma: no cover - another server, or no httptools: every chunk goes through `send`
    CYCLE = None

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = ": keep-alive\n\n"
_DONE, _RUN_STARTED = EventType.DONE.value, EventType.RUN_STARTED.value


@dataclass(frozen=True, slots=True)
class StreamSettings:
    keepalive_s: float = 15.0
    send_buffer: int = 1000  # events a stream may hold unsent; past it the client is dropped (slow_consumer)
    send_timeout_s: float = 40.0  # a send blocked this long (the peer reads nothing): the connection is closed


def sse_event(event: RunEvent) -> str:
    """One session event as an SSE event; `data` is the WebSocket frame, encoded once for every watcher."""
    return f"id: {event.seq}\nevent: {event.event_type}\ndata: {encode(event)}\n\n"


def sse_local(event_type: str, frame: str) -> str:
    """An event for this stream alone (connected, an error): no `id`, so it never moves Last-Event-ID."""
    return f"event: {event_type}\ndata: {frame}\n\n"


def cycle_of(raw_send: Callable[..., Any]) -> Any:
    """uvicorn's httptools request cycle behind its ASGI `send`, if that is what serves the stream (else None)."""
    cycle = getattr(raw_send, "__self__", None)
    return cycle if CYCLE is not None and isinstance(cycle, CYCLE) else None


class EventStreamResponse(StreamingResponse):
    """The response of one `EventStream`: its sends are watched, a client that goes away ends it, and the stream
    is closed however the response ends (also if it never started)."""

    media_type = None  # set per response; None keeps FastAPI from documenting a schema beside the itemSchema

    def __init__(self, stream: "EventStream", content: AsyncIterator[str], headers: dict[str, str]) -> None:
        super().__init__(content, media_type=MEDIA_TYPE, headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers,
        })
        self._stream, self._content = stream, content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self._stream
        raw_send: Send = scope.get(RAW_SEND_KEY) or send  # past the middleware, which only reads the head

        async def listen() -> None:  # the client went away: end the stream (its run goes on)
            with contextlib.suppress(Exception):  # a receive that fails: gone as well
                while (await receive())["type"] != "http.disconnect":
                    pass
            stream.close()

        stream.task = asyncio.current_task()
        stream.watchdog.watch(stream)
        listener = asyncio.get_running_loop().create_task(listen())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            stream.go_direct(raw_send)
            async for chunk in self._content:
                await stream.send(raw_send, {"type": "http.response.body", "body": chunk.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not stream.dropped or stream.task is None:
                raise
            stream.task.uncancel()  # ours (`drop`): the server closes a connection left without its end
        finally:
            listener.cancel()
            stream.watchdog.forget(stream)
            stream.close()


class EventStream:
    """One client's stream: its subscription, capacity slot, keep-alive timer and send watch, released once.
    The send watchdog closes it when a send stays blocked for `send_timeout_s`."""

    def __init__(
        self, sid: str, subscription: Subscription, capacity: Capacity, settings: StreamSettings,
        watchdog: SendWatchdog, telemetry: Telemetry,
    ) -> None:
        self.sid = sid
        self.telemetry = telemetry
        telemetry.connection_opened("sse")
        self.subscription = subscription
        self.settings = settings
        self.watchdog = watchdog
        self.send_started: float | None = None
        self.task: asyncio.Task[Any] | None = None
        self.dropped = False
        self._capacity = capacity
        self._open = self._holds_slot = True
        self._cycle: Any = None
        self._run_id: str | None = None
        self._direct_frames = 0  # events the fast path wrote since the last report
        subscription.on_overflow = self._overflowed  # a client that stopped reading frees its slot at once
        loop = asyncio.get_running_loop()

        def tick() -> None:
            subscription.put_local(KEEPALIVE)
            self._timer = loop.call_later(settings.keepalive_s, tick)

        self._timer = loop.call_later(settings.keepalive_s, tick)

    def response(self, content: AsyncIterator[str]) -> EventStreamResponse:
        return EventStreamResponse(self, content, {"X-Session-ID": self.sid})

    async def send(self, raw_send: Send, message: Message) -> None:
        """A chunk through the server's `send`, watched (see `drop`)."""
        self.send_started = time.monotonic()
        try:
            await raw_send(message)
        finally:
            self.send_started = None

    def go_direct(self, raw_send: Send) -> None:
        """The head is out: an event that finds the stream idle may now be written in the publisher's step."""
        self._cycle = cycle_of(raw_send)
        if self._cycle is not None:
            self.subscription.direct = self._send_now

    def _send_now(self, item: Item) -> bool:
        """What uvicorn's `send` does for a chunk, minus its wait for writability: False (the stream's task
        sends it) whenever that wait would be needed, the event is one the task checks (a run's start and end,
        another run's event), or anything is amiss. Never raises into the publisher."""
        if not isinstance(item, str) and (item.event_type == _RUN_STARTED or item.event_type == _DONE
                                          or (self._run_id is not None and item.run_id != self._run_id)):
            return False
        cycle = self._cycle
        try:
            if cycle.disconnected or cycle.flow.write_paused or cycle.response_complete \
                    or not cycle.chunked_encoding:
                return False  # checked before encoding: the task encodes what it sends itself
            data = (item if isinstance(item, str) else sse_event(item)).encode()
            cycle.transport.write(b"%x\r\n%s\r\n" % (len(data), data))
        except Exception:  # noqa: BLE001 - the connection is closing (or the server changed): the task's turn
            return False
        if not isinstance(item, str):
            self._direct_frames += 1
        return True

    def drop(self) -> None:
        """The peer has read nothing for `send_timeout_s`: end the response (the server closes the connection)."""
        self.dropped = True
        self.close()
        if self.task is not None:
            self.task.cancel()

    def _overflowed(self) -> None:
        self.telemetry.slow_consumer("sse")
        self._release_slot()

    def _release_slot(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self._capacity.release()

    def _report(self, sent: int) -> None:
        sent, self._direct_frames = sent + self._direct_frames, 0
        if sent:
            self.telemetry.frames_sent("sse", sent)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.subscription.direct = None
            self._report(0)
            self.telemetry.connection_closed("sse")
            self._timer.cancel()
            self.subscription.close()
            self._release_slot()

    async def events(
        self, head: list[str], run_id: str | None = None, on_run_start: Callable[[], Any] | None = None,
    ) -> AsyncIterator[str]:
        """`head`, then the subscription's events (only `run_id`'s if given) up to and including a `done`.
        `on_run_start` is awaited at each `run_started`, before it is sent (it may raise SessionNotFoundError)."""
        self._run_id = run_id
        try:
            if head:
                yield "".join(head)
            batch: list[Item] = list(self.subscription.replayed)
            while True:
                out: list[str] = []
                sent = 0  # events (not keep-alives) this batch, reported once per batch
                for item in batch:
                    if isinstance(item, str):
                        out.append(item)
                        continue
                    if run_id is not None and item.run_id != run_id:
                        continue
                    if on_run_start is not None and item.event_type == _RUN_STARTED:
                        if out:  # what came before is sent whatever the check says
                            yield "".join(out)
                            out = []
                        await on_run_start()
                    out.append(sse_event(item))
                    sent += 1
                    if item.event_type == _DONE:
                        self.subscription.direct = None
                        yield "".join(out)
                        self._report(sent)
                        return
                if out:
                    yield "".join(out)
                self._report(sent)
                batch = await self.subscription.get_batch()
        except (SlowConsumerError, SessionNotFoundError) as exc:
            yield sse_local("error", error_frame(self.sid, exc.code, exc.message, recoverable=False))
        except SubscriptionClosedError:
            return
        finally:
            self.close()
