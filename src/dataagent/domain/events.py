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


@dataclass(frozen=True, slots=True)
class UsageReported:
    usage: TokenUsage


AgentOutput = TextDelta | ToolCallRequested | ToolCompleted | UsageReported
