"""`AsyncDataAgentClient`: the DataAgent Server protocol (docs/PROTOCOL.md) on httpx and websockets."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Literal

import httpx

from dataagent.client.bodies import (
    CancelResult,
    ChatResult,
    Health,
    Message,
    MessagePage,
    RunHandle,
    SessionInfo,
    SessionPage,
)
from dataagent.client.config import ClientConfig, Secret
from dataagent.client.errors import from_response
from dataagent.client.models import Event
from dataagent.client.streams import Follow, SseTransport, WebSocketTransport

TransportName = Literal["websocket", "sse"]


def new_session_id() -> str:
    return "s-" + secrets.token_hex(12)


class AsyncDataAgentClient:
    """A client of one server: `async with AsyncDataAgentClient(url, api_key=...) as client: ...`.

    Errors the server answers are raised as `ApiError` subclasses named after their `error_code`.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 30.0, run_timeout: float | None = 600.0, retries: int = 6,
                 backoff: float = 0.1, max_backoff: float = 3.0, transport: TransportName = "websocket",
                 user_id: str | None = None) -> None:
        self.config = ClientConfig(
            base_url.rstrip("/"), Secret(api_key) if api_key else None, timeout, run_timeout, retries, backoff,
            max_backoff, user_id)
        self.transport: TransportName = transport
        self._http = httpx.AsyncClient(base_url=self.config.base_url, headers=self.config.headers(), timeout=timeout)

    def __repr__(self) -> str:
        return f"AsyncDataAgentClient(base_url={self.config.base_url!r}, transport={self.transport!r})"

    async def __aenter__(self) -> AsyncDataAgentClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- runs ----------------------------------------------------------------------------------------------

    async def ask(self, message: str, *, session_id: str | None = None,
                  metadata: dict[str, Any] | None = None) -> ChatResult:
        """Ask and wait for the answer (`POST /chat`); `result.interrupt` holds an approval request."""
        body = _chat_body(message, session_id, metadata)
        return self._result(await self._request("POST", "/api/v1/chat", json=body, timeout=self._run_timeout()))

    async def start(self, message: str, *, session_id: str | None = None,
                    metadata: dict[str, Any] | None = None) -> RunHandle:
        """Start a run in the background (`POST /chat` with `wait: false`); follow it with `join()`."""
        body = _chat_body(message, session_id, metadata) | {"wait": False}
        return RunHandle.model_validate(await self._request("POST", "/api/v1/chat", json=body))

    async def stream(self, message: str, *, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                     transport: TransportName | None = None) -> AsyncIterator[Event]:
        """Ask and iterate the run's typed events up to its `done`, reconnecting and resuming on a lost
        connection. `transport`: "websocket" (default of the client) or "sse"."""
        session_id = session_id or new_session_id()
        chat: dict[str, Any] = {"message": message} | ({"metadata": metadata} if metadata is not None else {})
        if (transport or self.transport) == "sse":
            tr: WebSocketTransport | SseTransport = SseTransport(
                self.config, self._http, session_id, chat | {"session_id": session_id})
        else:
            tr = WebSocketTransport(self.config, self._http, session_id, chat)
        async for event in Follow(self.config, tr).events():
            yield event

    async def join(self, session_id: str, *, after_seq: int | None = None,
                   transport: TransportName | None = None) -> AsyncIterator[Event]:
        """Follow a session's running answer (or its next one) up to its `done`: from its `run_started`, or
        after `after_seq`; resumed like `stream()`."""
        if (transport or self.transport) == "sse":
            tr: WebSocketTransport | SseTransport = SseTransport(self.config, self._http, session_id, None)
        else:
            tr = WebSocketTransport(self.config, self._http, session_id, None)
        async for event in Follow(self.config, tr, after_seq).events():
            yield event

    async def cancel(self, session_id: str, run_id: str | None = None) -> CancelResult:
        body = {"run_id": run_id} if run_id else {}
        return CancelResult.model_validate(await self._request("POST", f"/api/v1/chat/{session_id}/cancel", json=body))

    async def decide(self, session_id: str, interrupt_id: str, decision: dict[str, Any]) -> ChatResult:
        """Decide an approval request over REST and wait for the continued run (`POST /chat/{id}/hitl`)."""
        body = {"interrupt_id": interrupt_id, "decisions": [decision]}
        return self._result(await self._request(
            "POST", f"/api/v1/chat/{session_id}/hitl", json=body, timeout=self._run_timeout()))

    # ---- sessions ------------------------------------------------------------------------------------------

    async def sessions(self, *, page_size: int = 100) -> AsyncIterator[SessionInfo]:
        """The caller's sessions, most recently active first, read a page at a time."""
        async for page in self.session_pages(page_size=page_size):
            for session in page.sessions:
                yield session

    async def session_pages(self, *, page_size: int = 100) -> AsyncIterator[SessionPage]:
        offset = 0
        while True:
            page = SessionPage.model_validate(await self._request(
                "GET", "/api/v1/sessions", params={"limit": page_size, "offset": offset}))
            yield page
            offset += len(page.sessions)
            if not page.sessions or offset >= page.total:
                return

    async def session(self, session_id: str) -> SessionInfo:
        return SessionInfo.model_validate(await self._request("GET", f"/api/v1/sessions/{session_id}"))

    async def delete_session(self, session_id: str) -> None:
        await self._request("DELETE", f"/api/v1/sessions/{session_id}")

    async def history(self, session_id: str, *, page_size: int = 100) -> AsyncIterator[Message]:
        """A session's messages, oldest first, read a page at a time."""
        async for page in self.history_pages(session_id, page_size=page_size):
            for message in page.messages:
                yield message

    async def history_pages(self, session_id: str, *, page_size: int = 100) -> AsyncIterator[MessagePage]:
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = MessagePage.model_validate(await self._request(
                "GET", f"/api/v1/sessions/{session_id}/messages", params=params))
            yield page
            if not page.has_more or not page.messages:
                return
            params = {"limit": page_size, "after": page.messages[-1].message_id}

    async def health(self) -> Health:
        response = await self._http.get("/api/v1/health")
        return Health.model_validate(response.json())

    # ---- plumbing ------------------------------------------------------------------------------------------

    def _run_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.config.timeout, read=self.config.run_timeout)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise from_response(response.status_code, body, response.headers.get("retry-after"))
        return response.json() if response.content else None

    def _result(self, body: Any) -> ChatResult:
        result = ChatResult.model_validate(body)
        interrupt = result.interrupt
        if interrupt is not None:
            interrupt_id = interrupt.data.interrupt_id
            interrupt.bind(lambda decision: self.decide(result.session_id, interrupt_id, decision))
        return result


def _chat_body(message: str, session_id: str | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if session_id is not None:
        body["session_id"] = session_id
    if metadata is not None:
        body["metadata"] = metadata
    return body
