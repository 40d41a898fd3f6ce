"""Server-sent events: POST /chat/stream and GET /sessions/{session_id}/stream (PROTOCOL.md, Server-sent events).

An event stream (event_stream.py) is one more subscriber of the session's events: `id: <seq>`, `event:
<event_type>` and `data:` the WebSocket frame, encoded by the same function. A stream ends after the `done` it
follows; a client that goes away only closes its subscription, never the run (runs belong to the run manager).
"""

from functools import partial
from typing import Annotated, Any

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Header, Query

from dataagent.adapters.http.deps import IdempotencyKey, Principal, QueryPrincipal, Requests, Slots
from dataagent.adapters.http.event_stream import (
    MEDIA_TYPE,
    EventStream,
    EventStreamResponse,
    StreamSettings,
    sse_local,
)
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute
from dataagent.adapters.http.schemas import ErrorBody, StreamRequest
from dataagent.adapters.http.websocket.frames import local_frame
from dataagent.adapters.http.websocket.watchdog import SendWatchdog
from dataagent.application.capacity import Capacity
from dataagent.application.streams import Subscription
from dataagent.application.telemetry import Telemetry
from dataagent.application.watch import SessionWatch
from dataagent.domain.errors import CapacityExceededError, InvalidInputError, SessionNotFoundError

MAX_SEQ = 2**63 - 1
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

Streams = Annotated[StreamSettings, Depends(Provide["stream_settings"])]
Watchdog = Annotated[SendWatchdog, Depends(Provide["socket_watchdog"])]
Metrics = Annotated[Telemetry, Depends(Provide["telemetry"])]


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
    stream = EventStream(run.session_id, subscription, capacity, settings, watchdog, telemetry)
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
    stream = EventStream(session_id, subscription, capacity, settings, watchdog, telemetry)
    connected: dict[str, Any] = {"session_id": session_id, "active_run_id": active_run_id, "last_seq": last_seq}
    if resume is not None:
        connected["recovered"] = subscription.recovered
    head = [sse_local("connected", local_frame(session_id, "connected", connected))]
    # at each run's start the owner is read again: the id may have been deleted and taken by someone else since
    still_ours = partial(watch.visible, principal, session_id)
    return stream.response(stream.events(head, on_run_start=still_ours))
