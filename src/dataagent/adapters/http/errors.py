"""The one table from error codes to HTTP status, and the error envelope of every REST error."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from dataagent.adapters.http.inputs import SafeJSONResponse
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.errors import DataAgentError

log = logging.getLogger("dataagent.http")

STATUS_BY_CODE: dict[str, int] = {
    "unauthorized": 401,
    "forbidden": 403,
    "session_not_found": 404,
    "no_active_run": 404,
    "interrupt_not_found": 404,
    "message_not_found": 404,
    "feedback_not_found": 404,
    "verified_query_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "run_in_progress": 409,
    "decision_conflict": 409,
    "queue_full": 409,
    "payload_too_large": 413,
    "session_full": 413,
    "validation_error": 422,
    "idempotency_key_reused": 422,
    "rate_limited": 429,
    "too_many_sessions": 429,
    "internal_error": 500,
    "capacity_exceeded": 503,
    "store_unavailable": 503,
    "broker_unavailable": 503,
    "data_source_unavailable": 503,
}
RETRY_AFTER_S = {
    "capacity_exceeded": "1", "store_unavailable": "5", "broker_unavailable": "5", "data_source_unavailable": "5",
}
_HTTP_CODES = {
    400: "validation_error", 401: "unauthorized", 403: "forbidden",
    404: "not_found", 405: "method_not_allowed", 413: "payload_too_large",
}


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def error_response(
    request: Request, code: str, message: str, details: dict[str, Any] | None = None, status: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> SafeJSONResponse:
    body: dict[str, Any] = {"error_code": code, "message": message, "request_id": request_id_of(request)}
    if details:
        body["details"] = details
    headers: dict[str, str] = dict(extra_headers or {})
    if body["request_id"]:
        headers["X-Request-ID"] = body["request_id"]
    if code in RETRY_AFTER_S:
        headers["Retry-After"] = RETRY_AFTER_S[code]
    if code == "unauthorized":
        headers["WWW-Authenticate"] = "ApiKey"
    return SafeJSONResponse(body, status_code=status or STATUS_BY_CODE.get(code, 500), headers=headers)


def rate_limit_headers(details: Mapping[str, Any] | None) -> dict[str, str]:
    """`429 rate_limited`: Retry-After and the RateLimit-Limit / -Remaining / -Reset fields (seconds) of its
    details."""
    d = details or {}
    return {"Retry-After": str(d.get("retry_after", 1)), "RateLimit-Limit": str(d.get("limit", 0)),
            "RateLimit-Remaining": str(d.get("remaining", 0)), "RateLimit-Reset": str(d.get("reset", 1))}


def _domain_error(telemetry: Telemetry) -> Callable[[Request, Exception], Awaitable[SafeJSONResponse]]:
    async def handle(request: Request, exc: Exception) -> SafeJSONResponse:
        assert isinstance(exc, DataAgentError)
        headers = None
        if exc.code == "rate_limited":
            headers = rate_limit_headers(exc.details)
            telemetry.rate_limited("sse" if request.url.path.endswith("/chat/stream") else "rest")
        return error_response(request, exc.code, exc.message, exc.details, extra_headers=headers)

    return handle


async def _validation_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return error_response(request, "validation_error", "The request is not valid", {"errors": errors})


async def _http_error(request: Request, exc: Exception) -> SafeJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
    status = STATUS_BY_CODE[code] if code == "validation_error" else exc.status_code  # a body that did not parse
    return error_response(request, code, message, status=status, extra_headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> SafeJSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, "internal_error", "Internal server error")


def install_error_handlers(app: FastAPI, telemetry: Telemetry = NO_TELEMETRY) -> None:
    app.add_exception_handler(DataAgentError, _domain_error(telemetry))
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
