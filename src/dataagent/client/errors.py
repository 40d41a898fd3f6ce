"""The server's error codes as exceptions (docs/PROTOCOL.md, Errors), and the client's own failures."""

from __future__ import annotations

from typing import Any


class DataAgentClientError(Exception):
    """Base of every error this client raises."""


class ApiError(DataAgentClientError):
    """An error the server answered: its stable `error_code`, HTTP `status` (0 over a socket) and envelope."""

    error_code = "internal_error"

    def __init__(self, message: str, *, status: int = 0, error_code: str | None = None,
                 request_id: str | None = None, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code or type(self).error_code
        self.request_id = request_id
        self.details = details
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"


class Unauthorized(ApiError):
    error_code = "unauthorized"


class Forbidden(ApiError):
    """The key lacks a scope (DATAAGENT_KEY_SCOPES), e.g. `end_users` for `user_id`; or the key acts on one of its
    end users' sessions without naming the end user."""

    error_code = "forbidden"


class NotFound(ApiError):
    error_code = "not_found"


class SessionNotFound(NotFound):
    error_code = "session_not_found"


class NoActiveRun(NotFound):
    error_code = "no_active_run"


class InterruptNotFound(NotFound):
    error_code = "interrupt_not_found"


class MessageNotFound(NotFound):
    error_code = "message_not_found"


class Conflict(ApiError):
    error_code = "conflict"


class RunInProgress(Conflict):
    error_code = "run_in_progress"


class DecisionConflict(Conflict):
    error_code = "decision_conflict"


class ValidationFailed(ApiError):
    error_code = "validation_error"


class PayloadTooLarge(ApiError):
    error_code = "payload_too_large"


class SessionFull(PayloadTooLarge):
    error_code = "session_full"


class TooManySessions(ApiError):
    error_code = "too_many_sessions"


class RateLimited(ApiError):
    """Past the key's rate or its running answers (`details.kind`): try again after `retry_after` seconds."""

    error_code = "rate_limited"


class ServiceUnavailable(ApiError):
    """A 503: try again after `retry_after` seconds."""

    error_code = "service_unavailable"


class CapacityExceeded(ServiceUnavailable):
    error_code = "capacity_exceeded"


class StoreUnavailable(ServiceUnavailable):
    error_code = "store_unavailable"


class BrokerUnavailable(ServiceUnavailable):
    error_code = "broker_unavailable"


class ReplayUnavailable(ApiError):
    error_code = "replay_unavailable"


class InternalError(ApiError):
    error_code = "internal_error"


class RecoveryFailed(DataAgentClientError):
    """A stream could not be resumed without a gap: the server no longer holds the events after `after_seq`
    (evicted, or the server restarted). Reload the session's history over REST."""

    def __init__(self, session_id: str, after_seq: int | None) -> None:
        super().__init__(f"session {session_id}: the events after seq {after_seq} are no longer held")
        self.session_id = session_id
        self.after_seq = after_seq


class ConnectionLost(DataAgentClientError):
    """The connection failed and every retry to resume it failed too."""


_BY_CODE: dict[str, type[ApiError]] = {
    cls.error_code: cls for cls in (
        Unauthorized, Forbidden, NotFound, SessionNotFound, NoActiveRun, InterruptNotFound, MessageNotFound,
        RunInProgress, DecisionConflict, ValidationFailed, PayloadTooLarge, SessionFull, TooManySessions, RateLimited,
        CapacityExceeded,
        StoreUnavailable, BrokerUnavailable, ReplayUnavailable, InternalError,
    )
}
_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 413: PayloadTooLarge, 422: ValidationFailed,
    503: ServiceUnavailable,
}


def api_error(code: str, message: str, *, status: int = 0, request_id: str | None = None,
              details: dict[str, Any] | None = None, retry_after: float | None = None) -> ApiError:
    """The exception for an error code (by HTTP status when the code is unknown to this client)."""
    kind = _BY_CODE.get(code) or _BY_STATUS.get(status, ApiError)
    return kind(message, status=status, error_code=code, request_id=request_id, details=details,
                retry_after=retry_after)


def from_response(status: int, body: Any, retry_after: str | None) -> ApiError:
    """The exception for an HTTP error response (the error envelope, or whatever a proxy answered)."""
    envelope = body if isinstance(body, dict) else {}
    seconds = None
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = None
    return api_error(
        str(envelope.get("error_code") or f"http_{status}"), str(envelope.get("message") or f"HTTP {status}"),
        status=status, request_id=envelope.get("request_id"), details=envelope.get("details"), retry_after=seconds,
    )
