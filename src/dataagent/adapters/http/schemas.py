"""Request and response bodies of the REST API (pydantic lives here, at the edge)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dataagent.domain.events import RunEvent
from dataagent.domain.models import Message, Session

_SECOND_PREFIX: tuple[tuple[int, ...], str] = ((), "")


def iso(value: datetime) -> str:
    """ISO-8601 UTC with microseconds (the date-time prefix is formatted once per second)."""
    global _SECOND_PREFIX
    key = (value.year, value.month, value.day, value.hour, value.minute, value.second)
    if _SECOND_PREFIX[0] != key or value.utcoffset():
        if value.utcoffset():
            return value.isoformat(timespec="microseconds")
        _SECOND_PREFIX = (key, value.isoformat(timespec="seconds")[:19])
    return f"{_SECOND_PREFIX[1]}.{value.microsecond:06d}+00:00"


def event_dict(event: RunEvent) -> dict[str, Any]:
    """The wire shape of a server event (PROTOCOL.md): event_type, data, timestamp, session_id, run_id, seq."""
    return {
        "event_type": event.event_type,
        "data": event.data,
        "timestamp": iso(event.timestamp),
        "session_id": event.session_id,
        "run_id": event.run_id,
        "seq": event.seq,
    }


class StreamRequest(BaseModel):
    """The question of POST /chat/stream (and of POST /chat, which adds `wait`)."""

    model_config = ConfigDict(extra="ignore")

    message: str = Field(min_length=1, pattern=r"\S", description="at least one non-whitespace character")
    session_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    metadata: dict[str, Any] | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt"] = Field(
        default="reject", description="if the session is answering already: reject (409 run_in_progress), "
                                      "enqueue (run after it; a `queued` event) or interrupt (cancel it, then run)")


class ChatRequest(StreamRequest):
    wait: bool = Field(default=True, description="false: answer 202 {session_id, run_id} at once and run in the "
                                                  "background (follow it with GET /sessions/{session_id}/stream)")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: str | None = None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["approve", "reject"]
    args: dict[str, Any] | None = None
    message: str | None = None


class EditDecisionIn(BaseModel):
    """An edit runs the action with these args merged over the original ones (for run_sql: `sql`)."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["edit"]
    args: dict[str, Any] = Field(min_length=1)
    message: str | None = None


Decision = Annotated[DecisionIn | EditDecisionIn, Field(discriminator="type")]


class HitlRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    interrupt_id: str = Field(min_length=1)
    decisions: list[Decision] = Field(min_length=1, max_length=1)


class ChatResponse(BaseModel):
    session_id: str
    run_id: str
    status: Literal["completed", "cancelled", "failed", "awaiting_approval"]
    content: str
    message_id: str | None
    events: list[dict[str, Any]]


class RunAccepted(BaseModel):
    """POST /chat with `wait: false`: the run started and goes on without the caller."""

    session_id: str
    run_id: str


class CancelResponse(BaseModel):
    status: Literal["cancelled"] = "cancelled"
    session_id: str
    run_id: str


class SessionInfo(BaseModel):
    session_id: str
    user_id: str
    title: str
    created_at: str
    last_active: str
    message_count: int
    active_run_id: str | None
    pending_interrupt: dict[str, Any] | None
    metadata: dict[str, Any]
    end_user: str | None = Field(None, description="the end user it was created for (X-User-ID); user_id is the key's"
                                                   " principal")

    @classmethod
    def from_domain(cls, s: Session) -> SessionInfo:
        return cls(
            session_id=s.session_id, user_id=s.user_id, title=s.title, created_at=iso(s.created_at),
            last_active=iso(s.last_active), message_count=s.message_count, active_run_id=s.active_run_id,
            pending_interrupt=s.pending_interrupt, metadata=s.metadata, end_user=s.end_user,
        )


class SessionList(BaseModel):
    sessions: list[SessionInfo]
    total: int
    limit: int
    offset: int


class MessageOut(BaseModel):
    message_id: str
    session_id: str
    role: Literal["user", "assistant", "tool"]
    content: str
    created_at: str
    run_id: str | None
    status: str
    metadata: dict[str, Any]

    @classmethod
    def from_domain(cls, m: Message) -> MessageOut:
        return cls(
            message_id=m.message_id, session_id=m.session_id, role=m.role.value, content=m.content,
            created_at=iso(m.created_at), run_id=m.run_id, status=m.status, metadata=m.metadata,
        )


class MessageList(BaseModel):
    messages: list[MessageOut]
    total: int
    limit: int
    offset: int
    has_more: bool


class HealthChecks(BaseModel):
    store: str
    broker: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    uptime: float
    store: str
    broker: str
    agent: str
    checks: HealthChecks
    active_runs: int
    connections: int


class ErrorBody(BaseModel):
    error_code: str
    message: str
    request_id: str
    details: dict[str, Any] | None = None
