"""The REST bodies of the protocol (docs/PROTOCOL.md, REST routes) as the client reads them."""

from __future__ import annotations

from typing import Any, Literal

from dataagent.client.models import Event, HitlEvent, Table, ToolResultEvent, WireModel


class ChatResult(WireModel):
    """`POST /chat` and `POST /chat/{id}/hitl`: a run's outcome; `interrupt` while it awaits a decision."""

    session_id: str
    run_id: str
    status: Literal["completed", "cancelled", "failed", "awaiting_approval"]
    content: str
    message_id: str | None
    events: list[Event]

    @property
    def interrupt(self) -> HitlEvent | None:
        last = self.events[-1] if self.events else None
        return last if self.status == "awaiting_approval" and isinstance(last, HitlEvent) else None

    @property
    def tables(self) -> list[Table]:
        return [e.data.data.table for e in self.events
                if isinstance(e, ToolResultEvent) and e.data.data and e.data.data.table]


class RunHandle(WireModel):
    """A background run (`POST /chat` with `wait: false`)."""

    session_id: str
    run_id: str


class CancelResult(WireModel):
    status: Literal["cancelled"]
    session_id: str
    run_id: str


class SessionInfo(WireModel):
    session_id: str
    user_id: str
    title: str
    created_at: str
    last_active: str
    message_count: int
    active_run_id: str | None
    pending_interrupt: dict[str, Any] | None
    metadata: dict[str, Any]
    end_user: str | None = None  # the end user it was created for (X-User-ID); user_id is the key's principal


class SessionPage(WireModel):
    sessions: list[SessionInfo]
    total: int
    limit: int
    offset: int


class Message(WireModel):
    message_id: str
    session_id: str
    role: Literal["user", "assistant", "tool"]
    content: str
    created_at: str
    run_id: str | None
    status: str
    metadata: dict[str, Any]


class MessagePage(WireModel):
    messages: list[Message]
    total: int
    limit: int
    offset: int
    has_more: bool


class HealthChecks(WireModel):
    store: str
    broker: str


class Health(WireModel):
    status: Literal["ok", "degraded"]
    version: str
    uptime: float
    store: str
    broker: str
    agent: str
    checks: HealthChecks
    active_runs: int
    connections: int


class ErrorBody(WireModel):
    error_code: str
    message: str
    request_id: str
    details: dict[str, Any] | None = None

