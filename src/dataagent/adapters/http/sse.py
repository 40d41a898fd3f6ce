"""Server-sent events: POST /chat/stream and GET /sessions/{session_id}/stream (PROTOCOL.md, Server-sent events).

An event stream is one more subscriber of the session's events: `id: <seq>`, `event: <event_type>` and `data:`
the WebSocket frame, encoded by the same function. A stream ends after the `done` it follows; a client that goes
away only closes its subscription, never the run (runs belong to the run manager).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from dataagent.adapters.http.deps import IdempotencyKey, Principal, QueryPrincipal, Requests, Slots
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody, StreamRequest
from dataagent.adapters.http.websocket.frames import encode, error_frame, local_frame
from dataagent.adapters.http.websocket.watchdog import SendWatchdog
from dataagent.application.capacity import Capacity
from dataagent.application.streams import Item, SlowConsumerError, Subscription, SubscriptionClosedError
from dataagent.application.telemetry import Telemetry
from dataagent.application.watch import SessionWatch
from dataagent.domain.errors import CapacityExceededError, InvalidInputError, SessionNotFoundError
from dataagent.domain.events import EventType, RunEvent

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = ": keep-alive\n\n"
MAX_SEQ = 2**63 - 1
_DONE, _RUN_STARTED = EventType.DONE.value, EventType.RUN_STARTED.value
_STREAM_DOC = {
    "description": "Server-sent events until the run's `done`: `id: <seq>`, `event: <event_type>`, `data: <the "
                   "WebSocket frame as JSON>`, and a `: keep-alive` comment every DATAAGENT_SSE_KEEPALIVE seconds.",
    "content": {MEDIA_TYPE: {"itemSchema": {  # each event (Open API 3.2's itemSchema, as FastAPI writes it)
        "type": "object", "required": ["data"],
        "properties": {
            "event": {"type": "string", "description": "the frame's event_type"},
            "id": {"type": "string", "description": "the frame's seq (none on `connected` and stream errors)"},
            "data": {"type": "string", "contentMediaType": "application/json", "description": "the frame"},
        },
    }}},
}

router = APIRouter(tags=["streaming"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 503)
})


@dataclass(frozen=True, slots=True)
class StreamSettings:
    keepalive_s: float = 15.0
    send_buffer: int = 1000  # events a stream may hold unsent; past it the client is dropped (slow_consumer)
    send_timeout_s: float = 40.0  # a send blocked this long (the peer reads nothing): the connection is closed


Streams = Annotated[StreamSettings, Depends(Provide["stream_settings"])]
Watchdog = Annotated[SendWatchdog, Depends(Provide["socket_watchdog"])]
Metrics = Annotated[Telemetry, Depends(Provide["telemetry"])]


def sse_event(event: RunEvent) -> str:
    """One session event as an SSE event; `data` is the WebSocket frame, encoded once for every watcher."""
    return f"id: {event.seq}\nevent: {event.event_type}\ndata: {encode(event)}\n\n"


def sse_local(event_type: str, frame: str) -> str:
    """An event for this stream alone (connected, an error): no `id`, so it never moves Last-Event-ID."""
    return f"event: {event_type}\ndata: {frame}\n\n"


class EventStreamResponse(StreamingResponse):
    """The response of one `_Stream`: its sends are watched, and the stream is closed however the response ends
    (also if it never started)."""

    media_type = None  # set per response; None keeps FastAPI from documenting a schema beside the itemSchema

    def __init__(self, stream: "_Stream", content: AsyncIterator[str], headers: dict[str, str]) -> None:
        super().__init__(content, media_type=MEDIA_TYPE, headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers,
        })
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self._stream

        async def watched_send(message: Message) -> None:
            stream.send_started = time.monotonic()
            try:
                await send(message)
            finally:
                stream.send_started = None

        stream.task = asyncio.current_task()
        stream.watchdog.watch(stream)
        try:
            await super().__call__(scope, receive, watched_send)
        except asyncio.CancelledError:
            if not stream.dropped or stream.task is None:
                raise
            stream.task.uncancel()  # ours (`drop`): the server closes a connection left without its end
        finally:
            stream.watchdog.forget(stream)
            stream.close()


class _Stream:
    """One client's stream: its subscription, capacity slot, keep-alive timer and send watch, released once.
    The WebSocket's send watchdog closes it when a send stays blocked for `send_timeout_s`."""

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
        subscription.on_overflow = self._overflowed  # a client that stopped reading frees its slot at once
        loop = asyncio.get_running_loop()

        def tick() -> None:
            subscription.put_local(KEEPALIVE)
            self._timer = loop.call_later(settings.keepalive_s, tick)

        self._timer = loop.call_later(settings.keepalive_s, tick)

    def response(self, content: AsyncIterator[str]) -> EventStreamResponse:
        return EventStreamResponse(self, content, {"X-Session-ID": self.sid})

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

    def close(self) -> None:
        if self._open:
            self._open = False
            self.telemetry.connection_closed("sse")
            self._timer.cancel()
            self.subscription.close()
            self._release_slot()

    async def events(
        self, head: list[str], run_id: str | None = None, on_run_start: Callable[[], Any] | None = None,
    ) -> AsyncIterator[str]:
        """`head`, then the subscription's events (only `run_id`'s if given) up to and including a `done`.
        `on_run_start` is awaited at each `run_started`, before it is sent (it may raise SessionNotFoundError)."""
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
                        yield "".join(out)
                        self.telemetry.frames_sent("sse", sent)
                        return
                if out:
                    yield "".join(out)
                if sent:
                    self.telemetry.frames_sent("sse", sent)
                batch = await self.subscription.get_batch()
        except (SlowConsumerError, SessionNotFoundError) as exc:
            yield sse_local("error", error_frame(self.sid, exc.code, exc.message, recoverable=False))
        except SubscriptionClosedError:
            return
        finally:
            self.close()


def _take_slot(capacity: Capacity) -> None:
    if not capacity.try_acquire():
        raise CapacityExceededError()


@router.post("/chat/stream", status_code=200, response_class=EventStreamResponse,
             responses={200: _STREAM_DOC})
@inject
async def chat_stream(
    body: StreamRequest, principal: Principal, service: Requests, capacity: Slots, settings: Streams,
    watchdog: Watchdog, telemetry: Metrics, key: IdempotencyKey = None,
) -> EventStreamResponse:
    """Ask a question and stream its answer as server-sent events, through approvals, until its `done`."""
    _take_slot(capacity)
    try:
        run, subscription = await service.start_watched(
            principal, key, body.message, body.session_id, body.metadata, settings.send_buffer,
            body.multitask_strategy,
        )
    except BaseException:
        capacity.release()
        raise
    stream = _Stream(run.session_id, subscription, capacity, settings, watchdog, telemetry)
    return stream.response(stream.events([], run.run_id))


def _resume_point(last_event_id: str | None, after_seq: int | None) -> int | None:
    """`Last-Event-ID` (what an EventSource sends when it reconnects) wins over `?after_seq=`."""
    if last_event_id is None or not last_event_id.strip():
        return after_seq
    try:
        seq = int(last_event_id.strip())
    except ValueError:
        seq = -1
    if not 0 <= seq <= MAX_SEQ:
        raise InvalidInputError(f"Last-Event-ID must be a seq, an integer from 0 to {MAX_SEQ}")
    return seq


@router.get("/sessions/{session_id}/stream", status_code=200, response_class=EventStreamResponse,
             responses={200: _STREAM_DOC})
@inject
async def session_stream(
    session_id: str,
    principal: QueryPrincipal,
    watch: Annotated[SessionWatch, Depends(Provide["session_watch"])],
    capacity: Slots,
    settings: Streams,
    watchdog: Watchdog,
    telemetry: Metrics,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="resume after this seq")] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this seq (wins over after_seq)")] = None,
) -> EventStreamResponse:
    """Follow the session's running (or next) run until its `done`, resuming after a seq like the WebSocket."""
    resume = _resume_point(last_event_id, after_seq)
    _take_slot(capacity)
    subscription: Subscription | None = None
    try:
        watched = await watch.watch(principal, session_id, resume, settings.send_buffer)
        subscription = watched.subscription
        if not watched.ownership.readable or subscription is None:
            # another caller's id, or one nobody uses (unlike a socket, a stream on it would only idle)
            raise SessionNotFoundError()
        last_seq, active_run_id = watched.last_seq, watched.active_run_id
    except BaseException:
        if subscription is not None:
            subscription.close()
        capacity.release()
        raise
    stream = _Stream(session_id, subscription, capacity, settings, watchdog, telemetry)
    connected: dict[str, Any] = {"session_id": session_id, "active_run_id": active_run_id, "last_seq": last_seq}
    if resume is not None:
        connected["recovered"] = subscription.recovered
    head = [sse_local("connected", local_frame(session_id, "connected", connected))]
    # at each run's start the owner is read again: the id may have been deleted and taken by someone else since
    still_ours = partial(watch.visible, principal, session_id)
    return stream.response(stream.events(head, on_run_start=still_ours))
