"""Pure ASGI middleware: request ids on every response, and a bound on request body size."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataagent.application import logcontext
from dataagent.application.telemetry import Tracing

RAW_SEND_KEY = "dataagent.raw_send"  # the scope key of the server's own `send` (entrypoints/app.py, App)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Takes the client's X-Request-ID (if sane) or makes one; stores it in scope state and in the log context
    (a WebSocket's too: its log lines carry it); echoes it on HTTP responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _VALID_REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        logcontext.bind(request_id=request_id)
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", raw))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class TracingMiddleware:
    """A span per HTTP request (inside RequestIdMiddleware: the request id is an attribute); the run a request
    starts inherits it (its task copies the context). Installed only when tracing is on."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        attributes = {"http.request.method": scope["method"], "url.path": scope["path"],
                      "request_id": scope.get("state", {}).get("request_id", "")}
        with self.tracing.span(f"HTTP {scope['method']}", attributes):
            await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Answers 413 payload_too_large for a request body over `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._too_large(scope, send)
                return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not response_started:
                await self._too_large(scope, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        request_id = scope.get("state", {}).get("request_id", "")
        body: dict[str, Any] = {
            "error_code": "payload_too_large",
            "message": f"The request body is larger than {self.max_bytes} bytes",
            "request_id": request_id,
        }
        payload = orjson.dumps(body)
        await send({
            "type": "http.response.start", "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                        (b"x-request-id", request_id.encode())],
        })
        await send({"type": "http.response.body", "body": payload})


class _BodyTooLargeError(HTTPException):
    """Raised from receive(); an HTTPException so that FastAPI's body parsing passes it on as 413."""

    def __init__(self) -> None:
        super().__init__(413, "The request body is too large")
