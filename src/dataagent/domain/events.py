"""Run events: what an agent produces, and the numbered events broadcast to a session."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dataagent.domain.models import TokenUsage


class EventType(StrEnum):
    CONNECTED = "connected"
    RUN_STARTED = "run_started"
    TEXT = "text"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    HITL = "hitl"
    HITL_RESOLVED = "hitl_resolved"
    QUEUED = "queued"
    ERROR = "error"
    DONE = "done"
    PONG = "pong"


@dataclass(slots=True)
class RunEvent:
    """An event broadcast to every watcher of a session; `seq` is the session's sequence number.

    `wire` caches the transport's encoding so that an event sent to many sockets is encoded once.
    """

    event_type: str
    data: dict[str, Any]
    session_id: str
    run_id: str | None
    seq: int
    timestamp: datetime
    wire: str | None = field(default=None, compare=False, repr=False)


# The payloads built in several places: one constructor each (the per-token path keeps literals equal to them,
# see tests/unit/test_event_payloads.py).


def text_delta(content: str) -> dict[str, Any]:
    """A `text` event's data for an answer delta."""
    return {"content": content, "is_final": False}


def text_end() -> dict[str, Any]:
    """A `text` event's data for the empty final delta that ends a completed answer's text."""
    return {"content": "", "is_final": True}


def is_text_delta(data: dict[str, Any]) -> bool:
    """Whether a `text` event's data is a plain delta (exactly what `text_delta` builds)."""
    return len(data) == 2 and data.get("is_final") is False


def done_payload(
    run_id: str, status: str, message_id: str | None, token_usage: dict[str, Any] | None, reason: str | None = None
) -> dict[str, Any]:
    """A `done` event's data: how the run ended; `reason` (shutdown, worker_lost, ...) only when there is one."""
    done: dict[str, Any] = {
        "run_id": run_id, "status": status, "cancelled": status == "cancelled", "message_id": message_id,
        "token_usage": token_usage,
    }
    if reason:
        done["reason"] = reason
    return done


# What an agent engine yields while it works (approvals go through RunContext.request_approval).


@dataclass(frozen=True, slots=True)
class TextDelta:
    content: str


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    tool_call_id: str
    tool_name: str
    tool_args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCompleted:
    tool_call_id: str
    tool_name: str
    result: str
    status: str = "success"  # "success" | "error"
    table: dict[str, Any] | None = None
    chart: dict[str, Any] | None = None  # a Vega-Lite spec; without it the server charts `table` if it suits one
    sql: str | None = None  # the statement a run_sql call ran (after an edit, the edited one): stored, not sent


@dataclass(frozen=True, slots=True)
class UsageReported:
    usage: TokenUsage


AgentOutput = TextDelta | ToolCallRequested | ToolCompleted | UsageReported
