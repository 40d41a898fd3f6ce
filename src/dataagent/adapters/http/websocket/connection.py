"""One socket: its reader (acts on client frames at all times) and its writer (sends the session's events and
this socket's own frames from a bounded subscription; an idle writer's frames go by the fast path)."""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from dataagent.adapters.http.codes import CLOSE_NOT_FOUND, CLOSE_SLOW_CONSUMER, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN
from dataagent.adapters.http.middleware import RAW_SEND_KEY
from dataagent.adapters.http.websocket import fastpath, handlers
from dataagent.adapters.http.websocket.fastpath import RUN_STARTED
from dataagent.adapters.http.websocket.frames import encode, error_frame, frame_text, local_frame, parse_after_seq
from dataagent.adapters.http.websocket.watchdog import SendWatchdog
from dataagent.application.capacity import Capacity
from dataagent.application.chat import ChatService
from dataagent.application.idempotency import IdempotentChat
from dataagent.application.streams import SlowConsumerError, Subscription, SubscriptionClosedError
from dataagent.application.tasks import stop_tasks
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.application.watch import SessionWatch
from dataagent.domain.callers import Caller
from dataagent.domain.errors import (
    BrokerUnavailableError,
    DataAgentError,
    SessionNotFoundError,
    StoreUnavailableError,
)


@dataclass(frozen=True, slots=True)
class SocketSettings:
    send_buffer: int = 1000
    max_frame_bytes: int = 1024 * 1024
    send_timeout_s: float = 40.0  # a send blocked this long (the peer reads nothing, not even pings): drop it


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        principal: Caller,
        session_id: str,
        chat: ChatService,
        watch: SessionWatch,
        capacity: Capacity,
        settings: SocketSettings,
        watchdog: SendWatchdog,
    ) -> None:
        self.ws = websocket
        self.watchdog = watchdog
        self.principal = principal
        self.sid = session_id
        self.chat = chat
        self.requests: IdempotentChat | None = None  # the chat frame's client_message_id (set by the endpoint)
        self.watch = watch
        self.capacity = capacity
        self.settings = settings
        self.subscription: Subscription | None = None
        self.owned = False  # for delivery only: the session was ours at the last check (each run's start)
        self.asked_runs: set[str] = set()  # runs this socket asked for, whose start was checked by the ask
        self.replay_floor: int | None = None  # seqs at and above it were sent (or are queued) to this socket
        self._released = False
        self.send_started: float | None = None  # while a send is in progress: when it began (for the watchdog)
        self.writer: asyncio.Task[None] | None = None
        self.telemetry: Telemetry = NO_TELEMETRY  # set by the endpoint
        self.tracing: Tracing = NO_TRACING  # set by the endpoint
        self.direct_frames = 0  # frames the fast path wrote since the writer last reported them
        # The server's own ASGI send (entrypoints/app.py, App): Starlette's WebSocket.send re-checks its state
        # machine and its exception wrapper tracks each message, ~12% of the CPU when streaming token frames.
        self._raw_send = websocket.scope.get(RAW_SEND_KEY) or websocket.send
        self._protocol: Any = fastpath.protocol_of(self._raw_send)

    _send_now = fastpath.send_now  # the fast path, a method: see fastpath.py

    def drop(self) -> None:
        """The peer is gone: free its slot now and stop writing (the handler then ends)."""
        self.release_slot()
        if self.writer is not None:
            self.writer.cancel()

    def _overflowed(self) -> None:
        """The peer read too slowly (its send buffer overflowed): counted, and its slot given back at once."""
        self.telemetry.slow_consumer("ws")
        self.release_slot()

    def report_frames(self) -> None:
        """Report the frames the fast path wrote since the last report."""
        if self.direct_frames:
            self.telemetry.frames_sent("ws", self.direct_frames)
            self.direct_frames = 0

    def release_slot(self) -> None:
        """Give back the capacity slot (once): when the socket ends, or as soon as it overflows."""
        if not self._released:
            self._released = True
            self.capacity.release()

    async def serve(self) -> None:
        after_seq, bad_after = parse_after_seq(self.ws.query_params.get("after_seq"))
        try:
            watched = await self.watch.watch(self.principal, self.sid, after_seq, self.settings.send_buffer)
        except (StoreUnavailableError, BrokerUnavailableError) as exc:
            await self._refuse_unavailable(exc)
            return
        subscription = self.subscription = watched.subscription
        if subscription is None:  # another principal's id: PROTOCOL.md, close 4404
            await self._send(error_frame(self.sid, "session_not_found", "Session not found", recoverable=False))
            await self.ws.close(CLOSE_NOT_FOUND, "session_not_found")
            return
        self.owned = watched.ownership.readable
        subscription.on_overflow = self._overflowed
        self.replay_floor = subscription.replayed[0].seq if subscription.replayed else watched.last_seq + 1
        connected: dict[str, Any] = {
            "session_id": self.sid, "active_run_id": watched.active_run_id, "last_seq": watched.last_seq,
        }
        if after_seq is not None:
            connected["recovered"] = subscription.recovered
        await self._send(local_frame(self.sid, "connected", connected))
        if bad_after:
            subscription.put_local(error_frame(self.sid, "validation_error", "after_seq must be an integer"))
        writer = self.writer = asyncio.create_task(self._write(subscription), name=f"ws-writer:{self.sid}")
        reader = asyncio.create_task(self._read(subscription, writer), name=f"ws-reader:{self.sid}")
        self.watchdog.watch(self)
        self.telemetry.connection_opened("ws")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.watchdog.forget(self)
            await stop_tasks(reader, writer)
            self.telemetry.connection_closed("ws")

    async def _refuse_unavailable(self, exc: DataAgentError) -> None:
        """The store or the broker cannot be reached: say so, and close with 1013 (try again later)."""
        await self._send(error_frame(self.sid, exc.code, exc.message, recoverable=False))
        await self.ws.close(CLOSE_TRY_AGAIN, f"{exc.code}: try again later")

    async def is_ours(self) -> bool:
        """Whether the session exists and this socket's caller may watch it, read now (never cached: a session
        may be deleted or expire, and its id be taken by another principal or end user)."""
        self.owned = (await self.watch.ownership(self.principal, self.sid)).readable
        return self.owned

    # -- writer -------------------------------------------------------------------------------------

    async def _write(self, subscription: Subscription) -> None:
        try:
            if subscription.replayed and await self.is_ours():
                for event in subscription.replayed:
                    await self._send(encode(event))
                self.telemetry.frames_sent("ws", len(subscription.replayed))
            if self._protocol is not None:
                subscription.direct = self._send_now
            send, report = self._raw_send, self.telemetry.frames_sent
            while True:
                batch = await subscription.get_batch()
                self.send_started = time.monotonic()  # the watchdog drops a batch blocked for send_timeout_s
                for item in batch:  # the hot path: one frame per event, no extra coroutine layers
                    if not isinstance(item, str):
                        if not self.owned or item.event_type == RUN_STARTED:
                            await self._claim_ownership(item.run_id)
                        item = encode(item)
                    await send({"type": "websocket.send", "text": item})
                self.send_started = None
                sent, self.direct_frames = len(batch) + self.direct_frames, 0  # counted once a batch
                report("ws", sent)
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
            self.report_frames()

    async def _claim_ownership(self, run_id: str | None) -> None:
        """At each run's start (and at the first event of a session that did not exist at connect): the session
        must be ours, else SessionNotFoundError (the writer closes with 4404). Not read again for a run this
        socket asked for (the ask read the owner, and a run id is never reused): only for the runs of others."""
        if self.owned and run_id in self.asked_runs:
            self.asked_runs.discard(run_id)
            return
        if not await self.is_ours():
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
            raw = frame_text(message)
            if len(raw) > self.settings.max_frame_bytes or len(raw.encode()) > self.settings.max_frame_bytes:
                await self.ws.close(CLOSE_TOO_BIG, "frame too large")
                return
            if writer.done():
                return
            with self.tracing.span("dataagent.ws_message", {"session_id": self.sid}):  # a run it starts inherits it
                await handlers.handle(self, subscription, raw)
