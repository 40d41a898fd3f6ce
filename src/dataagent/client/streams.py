"""A run's events over WebSocket or server-sent events, resumed after a lost connection without a gap.

`Follow` reconnects with backoff and resumes after the last `seq` it yielded (`?after_seq=` on a socket,
`Last-Event-ID` on a stream); the server's `recovered: false` raises `RecoveryFailed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from dataagent.client.config import ClientConfig, RedactingLogger
from dataagent.client.errors import (
    ConnectionLost,
    RecoveryFailed,
    ServiceUnavailable,
    SessionNotFound,
    Unauthorized,
    ValidationFailed,
    api_error,
    from_response,
)
from dataagent.client.models import (
    ConnectedEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    HitlEvent,
    parse_event,
)
from dataagent.client.sse import sse_frames

log = logging.getLogger("dataagent.client")
_LOCAL = {"pong", "resumed"}


class Dropped(Exception):
    """The connection ended before the run's `done`: reconnect and resume."""


class Transport(Protocol):
    session_id: str

    def attempt(self, after_seq: int | None) -> AsyncIterator[dict[str, Any]]:
        """One connection's frames; raises Dropped when it is lost."""
        ...

    async def decide(self, interrupt_id: str, decision: dict[str, Any]) -> None:
        """Send a decision on an approval request of this session."""
        ...


def _decision_body(interrupt_id: str, decision: dict[str, Any]) -> dict[str, Any]:
    return {"interrupt_id": interrupt_id, "decisions": [decision]}


class WebSocketTransport:
    """`/ws/chat/{session_id}`: the question as a `chat` frame after `connected`, decisions as frames."""

    def __init__(self, config: ClientConfig, http: httpx.AsyncClient, session_id: str,
                 chat: dict[str, Any] | None) -> None:
        self._config, self._http, self.session_id, self._chat = config, http, session_id, chat
        self._ws: websockets.ClientConnection | None = None

    async def attempt(self, after_seq: int | None) -> AsyncIterator[dict[str, Any]]:
        url = f"{self._config.ws_url}/ws/chat/{self.session_id}"
        if after_seq is not None:
            url += f"?after_seq={after_seq}"
        try:
            async with websockets.connect(
                url, additional_headers=self._config.headers(), open_timeout=self._config.timeout, max_size=None,
                logger=RedactingLogger(logging.getLogger("websockets.client"), self._config.api_key),
            ) as ws:
                self._ws = ws
                async for raw in ws:
                    frame = json.loads(raw)
                    yield frame
                    if frame.get("event_type") == "connected" and self._chat is not None:
                        await ws.send(json.dumps({"type": "chat", "payload": self._chat}))
                        self._chat = None
        except ConnectionClosed as exc:
            raise _closed(exc) from exc
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise Dropped(str(exc)) from exc
        finally:
            self._ws = None

    async def decide(self, interrupt_id: str, decision: dict[str, Any]) -> None:
        frame = {"type": "hitl_decision", "payload": _decision_body(interrupt_id, decision)}
        if self._ws is None:
            raise Dropped("no socket to send the decision on")
        await self._ws.send(json.dumps(frame))


def _closed(exc: ConnectionClosed) -> Exception:
    code = exc.rcvd.code if exc.rcvd else 1006
    reason = exc.rcvd.reason if exc.rcvd else ""
    if code == 4401:
        return Unauthorized(reason or "A valid API key is required")
    if code == 4404:
        return SessionNotFound(reason or "Session not found")
    if code == 4400:
        return ValidationFailed(reason or "Invalid session id")
    return Dropped(f"socket closed {code} {reason}")


class SseTransport:
    """`POST /chat/stream` for a question (or `GET /sessions/{id}/stream`), decisions over REST meanwhile."""

    def __init__(self, config: ClientConfig, http: httpx.AsyncClient, session_id: str,
                 chat: dict[str, Any] | None) -> None:
        self._config, self._http, self.session_id, self._chat = config, http, session_id, chat
        self._decisions: set[asyncio.Task[httpx.Response]] = set()

    async def attempt(self, after_seq: int | None) -> AsyncIterator[dict[str, Any]]:
        timeout = httpx.Timeout(self._config.timeout, read=max(60.0, self._config.timeout))
        if self._chat is not None:
            request = self._http.build_request("POST", "/api/v1/chat/stream", json=self._chat, timeout=timeout)
        else:
            headers = {"Last-Event-ID": str(after_seq)} if after_seq is not None else {}
            request = self._http.build_request(
                "GET", f"/api/v1/sessions/{self.session_id}/stream", headers=headers, timeout=timeout)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.ConnectError as exc:
            raise Dropped(str(exc)) from exc
        except httpx.TransportError as exc:
            self._chat = None  # the question may have reached the server: resume on the session's stream
            raise Dropped(str(exc)) from exc
        self._chat = None
        try:
            if response.status_code != 200:
                await response.aread()
                raise from_response(response.status_code, _json(response), response.headers.get("retry-after"))
            async for frame in sse_frames(response):
                yield frame
        except httpx.TransportError as exc:
            raise Dropped(str(exc)) from exc
        finally:
            await response.aclose()

    async def decide(self, interrupt_id: str, decision: dict[str, Any]) -> None:
        """POST /hitl answers when the continued run ends: it runs beside the stream; `check()` raises its error."""
        task = asyncio.ensure_future(self._http.post(
            f"/api/v1/chat/{self.session_id}/hitl", json=_decision_body(interrupt_id, decision),
            timeout=httpx.Timeout(self._config.timeout, read=self._config.run_timeout)))
        self._decisions.add(task)

    def check(self) -> None:
        for task in [t for t in self._decisions if t.done()]:
            self._decisions.discard(task)
            response = task.result()
            if response.status_code != 200:
                raise from_response(response.status_code, _json(response), response.headers.get("retry-after"))

    def close(self) -> None:
        for task in self._decisions:
            task.cancel()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class Follow:
    """The events of one run (`run_id`, or the first run whose `done` arrives), resumed across connections."""

    def __init__(self, config: ClientConfig, transport: WebSocketTransport | SseTransport,
                 after_seq: int | None = None) -> None:
        self._config, self._transport = config, transport
        self._resume_from = after_seq
        self._last_seq: int | None = None

    async def events(self) -> AsyncIterator[Event]:
        failures = 0
        try:
            while True:
                try:
                    async for event in self._connection():
                        failures = 0
                        yield event
                        if isinstance(event, DoneEvent):
                            return
                    raise Dropped("the connection ended before the run's done")
                except Dropped as exc:
                    failures += 1
                    if failures > self._config.retries:
                        raise ConnectionLost(f"lost the connection and {self._config.retries} retries: {exc}") from exc
                    log.debug("stream of %s dropped (%s); retry %d", self._transport.session_id, exc, failures)
                    await asyncio.sleep(self._config.delay(failures))
        finally:
            if isinstance(self._transport, SseTransport):
                self._transport.close()

    async def _connection(self) -> AsyncIterator[Event]:
        after_seq = self._last_seq if self._last_seq is not None else self._resume_from
        try:
            async for frame in self._transport.attempt(after_seq):
                event = parse_event(frame)
                if isinstance(self._transport, SseTransport):
                    self._transport.check()
                if isinstance(event, ConnectedEvent):
                    self._on_connected(event, after_seq)
                elif isinstance(event, ErrorEvent) and event.seq is None:
                    _raise_local(event)
                elif event.event_type in _LOCAL or (event.seq is not None and self._seen(event.seq)):
                    continue
                else:
                    yield self._bound(event)
        except ServiceUnavailable as exc:
            if self._last_seq is None and self._resume_from is None:
                raise
            raise Dropped(str(exc)) from exc

    def _on_connected(self, event: ConnectedEvent, after_seq: int | None) -> None:
        if after_seq is not None and event.data.recovered is False:
            raise RecoveryFailed(self._transport.session_id, after_seq)
        if self._resume_from is None:
            self._resume_from = event.data.last_seq  # every event of a run asked for after this one is newer

    def _seen(self, seq: int) -> bool:
        if self._last_seq is not None and seq <= self._last_seq:
            return True
        self._last_seq = seq
        return False

    def _bound(self, event: Event) -> Event:
        if isinstance(event, HitlEvent):
            interrupt_id = event.data.interrupt_id
            event.bind(lambda decision: self._transport.decide(interrupt_id, decision))
        return event


def _raise_local(event: ErrorEvent) -> None:
    """An error for this connection alone: a slow consumer resumes, anything else is raised."""
    if event.data.error_code == "slow_consumer":
        raise Dropped("slow consumer")
    details = event.data.details
    retry = details.get("retry_after") if details else None
    raise api_error(event.data.error_code, event.data.message, details=details,
                    retry_after=float(retry) if isinstance(retry, int | float) else None)

