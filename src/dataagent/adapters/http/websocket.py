"""WebSocket /ws/chat/{session_id}: streaming chat, approvals, cancel and resume (PROTOCOL.md).

One reader task acts on client frames at all times; one writer task sends the session's events and this
socket's own frames from a bounded subscription (an idle writer's frames are written in the publisher's step:
`_send_now`). A run belongs to the run manager, not to the socket.
"""

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect

from dataagent.adapters.http.auth import presented_key
from dataagent.adapters.http.inputs import dumps, parse_json
from dataagent.adapters.http.schemas import event_dict, iso
from dataagent.adapters.http.watchdog import SendWatchdog
from dataagent.application.auth import ApiKeyAuthenticator
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService
from dataagent.application.hub import EventHub
from dataagent.application.streams import Item, SlowConsumerError, Subscription, SubscriptionClosedError
from dataagent.domain.errors import (
    BrokerUnavailableError,
    DataAgentError,
    InterruptNotFoundError,
    InvalidInputError,
    NoActiveRunError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.models import SESSION_ID_PATTERN

try:  # uvicorn's default WebSocket protocol: its frames can be written without awaiting (see _send_now)
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol as _SansIO

    SANSIO: type[Any] | None = _SansIO
except ImportError:  # pragma: no cover - another server, or a uvicorn without it: frames go through the writer
    SANSIO = None

log = logging.getLogger("dataagent.ws")
router = APIRouter()

CLOSE_UNAUTHORIZED = 4401
CLOSE_BAD_SESSION = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_SLOW_CONSUMER = 4008
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_BIG = 1009
RAW_SEND_KEY = "dataagent.raw_send"
RUN_STARTED = EventType.RUN_STARTED.value  # each run's first event: the writer checks the owner again there


@dataclass(frozen=True, slots=True)
class SocketSettings:
    send_buffer: int = 1000
    max_frame_bytes: int = 1024 * 1024
    send_timeout_s: float = 40.0  # a send blocked this long (the peer reads nothing, not even pings): drop it


def encode(event: RunEvent) -> str:
    """The event's JSON frame, encoded once and shared by every socket that sends it."""
    if event.wire is None:
        event.wire = dumps(event_dict(event)).decode()
    return event.wire


def local_frame(session_id: str, event_type: str, data: dict[str, Any], run_id: str | None = None) -> str:
    """A frame for one socket only (connected, pong, errors about its own frames): it carries no seq."""
    return dumps({
        "event_type": event_type, "data": data, "timestamp": iso(datetime.now(UTC)),
        "session_id": session_id, "run_id": run_id,
    }).decode()


def error_frame(session_id: str, code: str, message: str, recoverable: bool = True) -> str:
    return local_frame(session_id, "error", {"error_code": code, "message": message, "recoverable": recoverable})


@router.websocket("/ws/chat/{session_id}")
@inject
async def chat_socket(
    websocket: WebSocket,
    session_id: str,
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    capacity: Annotated[Capacity, Depends(Provide["capacity"])],
    chat: Annotated[ChatService, Depends(Provide["chat_service"])],
    broker: Annotated[EventHub, Depends(Provide["broker"])],
    settings: Annotated[SocketSettings, Depends(Provide["socket_settings"])],
    watchdog: Annotated[SendWatchdog, Depends(Provide["socket_watchdog"])],
) -> None:
    await websocket.accept()
    principal = authenticator.authenticate(presented_key(websocket.headers, websocket.query_params))
    if principal is None:
        await websocket.close(CLOSE_UNAUTHORIZED, "unauthorized: a valid API key is required")
        return
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        await websocket.close(CLOSE_BAD_SESSION, "session_id must be 1..64 characters of [A-Za-z0-9_-]")
        return
    if not capacity.try_acquire():
        await websocket.close(CLOSE_TRY_AGAIN, "server at capacity, try again later")
        return
    connection = _Connection(websocket, principal, session_id, chat, broker, capacity, settings, watchdog)
    try:
        await connection.serve()
    finally:
        connection.release_slot()
        if connection.subscription is not None:
            connection.subscription.close()


class _Connection:
    def __init__(
        self,
        websocket: WebSocket,
        principal: str,
        session_id: str,
        chat: ChatService,
        broker: EventHub,
        capacity: Capacity,
        settings: SocketSettings,
        watchdog: SendWatchdog,
    ) -> None:
        self.ws = websocket
        self.watchdog = watchdog
        self.principal = principal
        self.sid = session_id
        self.chat = chat
        self.broker = broker
        self.capacity = capacity
        self.settings = settings
        self.subscription: Subscription | None = None
        self.owned = False  # for delivery only: the session was ours at the last check (each run's start)
        self.replay_floor: int | None = None  # seqs at and above it were sent (or are queued) to this socket
        self._released = False
        self.send_started: float | None = None  # while a send is in progress: when it began (for the watchdog)
        self.writer: asyncio.Task[None] | None = None
        # The server's own ASGI send (see RawSendMiddleware): Starlette's WebSocket.send re-checks its state
        # machine and its exception wrapper tracks each message, ~12% of the CPU when streaming token frames.
        self._raw_send = websocket.scope.get(RAW_SEND_KEY) or websocket.send
        protocol = getattr(self._raw_send, "__self__", None)
        self._protocol: Any = protocol if SANSIO is not None and isinstance(protocol, SANSIO) else None

    def drop(self) -> None:
        """The peer is gone: free its slot now and stop writing (the handler then ends)."""
        self.release_slot()
        if self.writer is not None:
            self.writer.cancel()

    def release_slot(self) -> None:
        """Give back the capacity slot (once): when the socket ends, or as soon as it overflows."""
        if not self._released:
            self._released = True
            self.capacity.release()

    async def serve(self) -> None:
        try:
            session = await self.chat.peek_session(self.sid)
        except StoreUnavailableError as exc:
            await self._refuse_unavailable(exc)
            return
        if session is not None and not session.is_owned_by(self.principal):
            await self._send(error_frame(self.sid, "session_not_found", "Session not found", recoverable=False))
            await self.ws.close(CLOSE_NOT_FOUND, "session_not_found")
            return
        self.owned = session is not None
        after_seq, bad_after = _after_seq(self.ws.query_params.get("after_seq"))
        try:
            subscription = await self.broker.subscribe(self.sid, after_seq, self.settings.send_buffer)
            self.subscription = subscription
            last_seq = await self.broker.last_seq(self.sid)
            active_run_id = await self.broker.active_run(self.sid)
        except BrokerUnavailableError as exc:
            await self._refuse_unavailable(exc)
            return
        subscription.on_overflow = self.release_slot
        self.replay_floor = subscription.replayed[0].seq if subscription.replayed else last_seq + 1
        connected: dict[str, Any] = {
            "session_id": self.sid, "active_run_id": active_run_id, "last_seq": last_seq,
        }
        if after_seq is not None:
            connected["recovered"] = subscription.recovered
        await self._send(local_frame(self.sid, "connected", connected))
        if bad_after:
            subscription.put_local(error_frame(self.sid, "validation_error", "after_seq must be an integer"))
        writer = self.writer = asyncio.create_task(self._write(subscription), name=f"ws-writer:{self.sid}")
        reader = asyncio.create_task(self._read(subscription, writer), name=f"ws-reader:{self.sid}")
        self.watchdog.watch(self)
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.watchdog.forget(self)
            for task in (reader, writer):
                task.cancel()
            for task in (reader, writer):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _refuse_unavailable(self, exc: DataAgentError) -> None:
        """The store or the broker cannot be reached: say so, and close with 1013 (try again later)."""
        await self._send(error_frame(self.sid, exc.code, exc.message, recoverable=False))
        await self.ws.close(CLOSE_TRY_AGAIN, f"{exc.code}: try again later")

    async def _is_ours(self) -> bool:
        """Whether the session exists and belongs to this socket's principal, read now (never cached: a session
        may be deleted or expire, and its id be taken by another principal)."""
        session = await self.chat.peek_session(self.sid)
        self.owned = session is not None and session.is_owned_by(self.principal)
        return self.owned

    # -- writer -------------------------------------------------------------------------------------

    async def _write(self, subscription: Subscription) -> None:
        try:
            if subscription.replayed and await self._is_ours():
                for event in subscription.replayed:
                    await self._send(encode(event))
            if self._protocol is not None:
                subscription.direct = self._send_now
            send = self._raw_send
            while True:
                batch = await subscription.get_batch()
                self.send_started = time.monotonic()  # the watchdog drops a batch blocked for send_timeout_s
                for item in batch:  # the hot path: one frame per event, no extra coroutine layers
                    if not isinstance(item, str):
                        if not self.owned or item.event_type == RUN_STARTED:
                            await self._claim_ownership()
                        item = encode(item)
                    await send({"type": "websocket.send", "text": item})
                self.send_started = None
        except SessionNotFoundError:  # deleted, expired, or not ours: PROTOCOL.md, close 4404
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self._send(error_frame(self.sid, "session_not_found", "Session not found", recoverable=False))
                await self._send_message({"type": "websocket.close", "code": CLOSE_NOT_FOUND,
                                          "reason": "session_not_found"})
        except SlowConsumerError:
            await self._send_message({"type": "websocket.close", "code": CLOSE_SLOW_CONSUMER,
                                      "reason": "slow_consumer: reconnect with after_seq"})
        except (SubscriptionClosedError, WebSocketDisconnect, OSError, RuntimeError):
            return  # the socket is gone or closing: the reader sees the disconnect
        finally:
            subscription.direct = None

    def _send_now(self, item: Item) -> bool:
        """Write a frame from the publisher's step, when the socket takes it without waiting: one task step
        less per token than waking the writer (PERFORMANCE.md). What the server's own `send` does for a text
        frame, minus its wait for writability: False (the writer sends it) whenever that wait would be needed,
        the session's ownership is still to be checked, or anything is amiss."""
        protocol = self._protocol
        try:  # never raise into the publisher (a run): on anything unexpected, the writer sends it
            if protocol is None or not protocol.writable.is_set() or protocol.disconnected or protocol.close_sent \
                    or not protocol.handshake_complete or protocol.initial_response is not None:
                return False
            if not isinstance(item, str):
                if not self.owned or item.event_type == RUN_STARTED:
                    return False
                item = encode(item)
            protocol.conn.send_text(item.encode())
        except Exception:  # noqa: BLE001 - the connection is closing (or the server changed): writer's turn
            return False
        try:  # the frame is taken: a broken socket loses it, as any send would (no `suppress`: 5% of the CPU)
            protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        except Exception:  # noqa: BLE001, S110
            pass
        return True

    async def _claim_ownership(self) -> None:
        """At each run's start (and at the first event of a session that did not exist at connect): the session
        must be ours, else SessionNotFoundError (the writer closes with 4404)."""
        if not await self._is_ours():
            raise SessionNotFoundError()

    async def _send(self, text: str) -> None:
        await self._send_message({"type": "websocket.send", "text": text})

    async def _send_message(self, message: dict[str, Any]) -> None:
        """Send one message; the watchdog drops the socket if it stays blocked for `send_timeout_s`."""
        self.send_started = time.monotonic()
        try:
            await self._raw_send(message)
        finally:
            self.send_started = None

    # -- reader -------------------------------------------------------------------------------------

    async def _read(self, subscription: Subscription, writer: asyncio.Task[None]) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text")
            if raw is None:
                raw = (message.get("bytes") or b"").decode("utf-8", "replace")
            if len(raw) > self.settings.max_frame_bytes or len(raw.encode()) > self.settings.max_frame_bytes:
                await self.ws.close(CLOSE_TOO_BIG, "frame too large")
                return
            if writer.done():
                return
            await self._handle(subscription, raw)

    async def _handle(self, subscription: Subscription, raw: str) -> None:
        try:
            frame = parse_json(raw)
        except json.JSONDecodeError as exc:
            subscription.put_local(error_frame(self.sid, "validation_error", f"frame is not valid JSON: {exc.msg}"))
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        payload = frame.get("payload", {}) if isinstance(frame, dict) else None
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None or not isinstance(payload, dict):
            subscription.put_local(error_frame(
                self.sid, "validation_error", f"unknown frame type {kind!r} or payload not an object"
            ))
            return
        try:
            await handler(self, subscription, payload)
        except DataAgentError as exc:
            subscription.put_local(error_frame(self.sid, exc.code, exc.message))

    async def _on_chat(self, subscription: Subscription, payload: dict[str, Any]) -> None:
        try:  # the service validates the message and the metadata
            await self.chat.start(
                self.principal, payload.get("message"), self.sid, payload.get("metadata")  # type: ignore[arg-type]
            )
        except SessionNotFoundError:
            subscription.fail(SessionNotFoundError())  # the id is another principal's now: close 4404
            return
        self.owned = True

    async def _check_frame(self, subscription: Subscription) -> bool:
        """Every acting frame reads the session's owner: True if ours, False if nobody uses the id; another
        principal's (deleted or expired, and the id taken since) fails the socket (4404) and the frame."""
        session = await self.chat.peek_session(self.sid)
        if session is not None and not session.is_owned_by(self.principal):
            subscription.fail(SessionNotFoundError())
            raise SessionNotFoundError()
        return session is not None

    async def _require_session(self, subscription: Subscription, missing: DataAgentError) -> None:
        """An id nobody uses yet has no run and no approval: say so rather than session_not_found."""
        if not await self._check_frame(subscription):
            raise missing

    async def _on_decision(self, subscription: Subscription, payload: dict[str, Any]) -> None:
        await self._require_session(subscription, InterruptNotFoundError("No approval is pending in this session"))
        interrupt_id = payload.get("interrupt_id")
        if interrupt_id is not None and not isinstance(interrupt_id, str):
            raise InvalidInputError("interrupt_id must be a string")
        await self.chat.decide(self.principal, self.sid, interrupt_id, payload.get("decisions"))

    async def _on_cancel(self, subscription: Subscription, payload: dict[str, Any]) -> None:
        await self._require_session(subscription, NoActiveRunError())
        run_id = payload.get("run_id")
        await self.chat.cancel(self.principal, self.sid, run_id if isinstance(run_id, str) else None, wait=False)

    async def _on_ping(self, subscription: Subscription, payload: dict[str, Any]) -> None:
        subscription.put_local(local_frame(self.sid, "pong", {}))

    async def _on_resume(self, subscription: Subscription, payload: dict[str, Any]) -> None:
        after_seq = payload.get("after_seq")
        if not isinstance(after_seq, int) or isinstance(after_seq, bool):
            raise InvalidInputError("after_seq must be an integer")
        if not await self._check_frame(subscription):
            return
        held, complete = await self.broker.replay(self.sid, after_seq)
        floor = self.replay_floor if self.replay_floor is not None else after_seq + 1
        missing = [e for e in held if e.seq < floor]  # later ones were sent, or are queued, already
        if missing:
            self.replay_floor = missing[0].seq
        if not complete:
            subscription.put_local(error_frame(
                self.sid, "replay_unavailable", "Events after after_seq are no longer held; reload the history"
            ))
        for event in missing:
            subscription.put_local(encode(event))


_HANDLERS = {
    "chat": _Connection._on_chat,
    "hitl_decision": _Connection._on_decision,
    "cancel": _Connection._on_cancel,
    "ping": _Connection._on_ping,
    "resume": _Connection._on_resume,
}


def _after_seq(raw: str | None) -> tuple[int | None, bool]:
    if raw is None:
        return None, False
    try:
        return int(raw), False
    except ValueError:
        return None, True
