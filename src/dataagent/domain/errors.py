"""The one error tree of DataAgent. Every error carries a stable machine code (PROTOCOL.md)."""

from __future__ import annotations

from typing import Any, ClassVar


class DataAgentError(Exception):
    """Base of every domain error; `code` is stable and machine-readable."""

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class UnauthorizedError(DataAgentError):
    code = "unauthorized"
    default_message = "A valid API key is required"


class ForbiddenError(DataAgentError):
    code = "forbidden"
    default_message = "This API key may not do that"


class SessionNotFoundError(DataAgentError):
    code = "session_not_found"
    default_message = "Session not found"


class NoActiveRunError(DataAgentError):
    code = "no_active_run"
    default_message = "No active run in this session"


class InterruptNotFoundError(DataAgentError):
    code = "interrupt_not_found"
    default_message = "Interrupt not found"


class MessageNotFoundError(DataAgentError):
    code = "message_not_found"
    default_message = "Message not found"


class FeedbackNotFoundError(DataAgentError):
    code = "feedback_not_found"
    default_message = "No feedback of this API key on this message"


class VerifiedQueryNotFoundError(DataAgentError):
    code = "verified_query_not_found"
    default_message = "Verified query not found"


class RunInProgressError(DataAgentError):
    code = "run_in_progress"
    default_message = "A run is already in progress in this session"


class QueueFullError(DataAgentError):
    code = "queue_full"
    default_message = "This session already has as many queued questions as it may"


class IdempotencyKeyReusedError(DataAgentError):
    code = "idempotency_key_reused"
    default_message = "This idempotency key was used for a different request"


class DecisionConflictError(DataAgentError):
    code = "decision_conflict"
    default_message = "This interrupt was already decided"


class InvalidInputError(DataAgentError):
    code = "validation_error"
    default_message = "Invalid input"


class PayloadTooLargeError(DataAgentError):
    code = "payload_too_large"
    default_message = "Payload too large"


class TooManySessionsError(DataAgentError):
    code = "too_many_sessions"
    default_message = "Too many sessions for this principal; delete some first"


class RateLimitedError(DataAgentError):
    """Past a key's rate (new questions in a window) or its answers running at once; `details` say which, the
    limit, what is left and in how many seconds to try again."""

    code = "rate_limited"
    default_message = "Too many requests for this key; try again later"


class SessionFullError(DataAgentError):
    code = "session_full"
    default_message = "This session holds as much as it may; start a new session"

    @classmethod
    def past(cls, limit: int, stored: int, size: int) -> SessionFullError:
        """A message of `size` bytes refused by a session storing `stored` of at most `limit`."""
        return cls(
            f"This session stores {stored} bytes; this message of {size} would take it past its bound of "
            f"{limit}: start a new session",
            details={"max_session_bytes": limit, "stored_bytes": stored, "question_bytes": size},
        )


class CapacityExceededError(DataAgentError):
    code = "capacity_exceeded"
    default_message = "Server at capacity, try again later"


class StoreUnavailableError(DataAgentError):
    code = "store_unavailable"
    default_message = "The session store is unavailable"


class BrokerUnavailableError(DataAgentError):
    code = "broker_unavailable"
    default_message = "The run broker is unavailable"


class ReplayUnavailableError(DataAgentError):
    code = "replay_unavailable"
    default_message = "The requested events are no longer held"


class AgentFailedError(DataAgentError):
    code = "agent_error"
    default_message = "The agent failed"


class WorkerLostError(DataAgentError):
    code = "worker_lost"
    default_message = "The process running this answer stopped"


class InvalidTransitionError(DataAgentError):
    """A run was asked to move between states its state machine forbids (a programming error)."""

    code = "internal_error"
    default_message = "Invalid run state transition"


class DataSourceUnavailableError(DataAgentError):
    code = "data_source_unavailable"
    default_message = "The data source is unavailable"
