"""The wire models of the protocol (docs/PROTOCOL.md) as the client reads them: server events and REST bodies.

Unknown keys are kept (`extra="allow"`: the server's extensions are additive); an unknown event type parses
as `UnknownEvent`. tests/client/test_schemas.py checks these against the server's own schemas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, PrivateAttr


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- event payloads ----------------------------------------------------------------------------------------


class ConnectedData(WireModel):
    session_id: str
    active_run_id: str | None
    last_seq: int
    recovered: bool | None = None


class ResumedData(WireModel):
    after_seq: int
    replayed: int


class RunStartedData(WireModel):
    run_id: str
    message_id: str  # the stored question
    verified_queries: list[str] | None = None  # the verified queries given to the engine as examples


class QueuedData(WireModel):
    run_id: str
    position: int


class TextData(WireModel):
    content: str
    is_final: bool


class ToolCallData(WireModel):
    tool_call_id: str
    tool_name: str
    tool_args: dict[str, Any]


class Table(WireModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool


class ToolResultExtras(WireModel):
    table: Table | None = None
    chart: dict[str, Any] | None = None


class ToolResultData(WireModel):
    tool_call_id: str
    tool_name: str
    result: str
    status: Literal["success", "error"]
    data: ToolResultExtras | None = None


class Estimate(WireModel):
    """The planner's cost estimate of an SQL statement, made before asking for approval."""

    available: bool
    rows: int | None = None
    full_scans: list[str] = []
    source: str | None = None
    reason: str | None = None


class HitlArgs(WireModel):
    """The action's arguments: for `run_sql`, the statement and what the server found out about it; any other
    key a tool has is kept too (`args["key"]` reads any of them)."""

    sql: str | None = None
    statement_type: str | None = None
    read_only: bool | None = None
    tables: list[str] | None = None
    estimate: Estimate | None = None
    policy: str | None = None
    executed_sql: str | None = None

    def __getitem__(self, key: str) -> Any:
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        if key in type(self).model_fields and getattr(self, key) is not None:
            return getattr(self, key)
        raise KeyError(key)


class HitlAction(WireModel):
    name: str
    args: HitlArgs
    description: str


class HitlData(WireModel):
    interrupt_id: str
    action: HitlAction
    allowed_decisions: list[str]
    expires_at: str


class ResolvedDecision(WireModel):
    type: Literal["approve", "reject", "edit"]
    args: dict[str, Any] | None = None
    message: str | None = None
    source: Literal["client", "timeout", "cancel"]


class HitlResolvedData(WireModel):
    interrupt_id: str
    decision: ResolvedDecision


class ErrorData(WireModel):
    error_code: str
    message: str
    recoverable: bool
    details: dict[str, Any] | None = None  # rate_limited: kind, limit, remaining, reset, retry_after


class TokenUsage(WireModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class DoneData(WireModel):
    run_id: str
    status: Literal["completed", "cancelled", "failed"]
    cancelled: bool
    message_id: str | None
    token_usage: TokenUsage | None
    reason: str | None = None


class PongData(WireModel):
    pass


# ---- events --------------------------------------------------------------------------------------------------


class BaseEvent(WireModel):
    """A server frame: `{event_type, data, timestamp, session_id, run_id, seq}` (`seq` absent on local frames)."""

    event_type: str
    data: Any
    timestamp: str
    session_id: str | None = None
    run_id: str | None = None
    seq: int | None = None


class ConnectedEvent(BaseEvent):
    event_type: Literal["connected"]
    data: ConnectedData


class ResumedEvent(BaseEvent):
    event_type: Literal["resumed"]
    data: ResumedData


class RunStartedEvent(BaseEvent):
    event_type: Literal["run_started"]
    data: RunStartedData


class TextEvent(BaseEvent):
    event_type: Literal["text"]
    data: TextData


class ToolCallEvent(BaseEvent):
    event_type: Literal["tool_call"]
    data: ToolCallData


class ToolResultEvent(BaseEvent):
    event_type: Literal["tool_result"]
    data: ToolResultData


Decide = Callable[[dict[str, Any]], Any]


class HitlEvent(BaseEvent):
    """An approval request. `approve()`, `reject(reason)` and `edit(sql)` decide it: over the stream's socket
    on WebSocket, else over REST. On `AsyncDataAgentClient` they are awaited; on `DataAgentClient` they return
    at once. After `ask()` they return the continued run's `ChatResult`; inside a stream, None (the stream goes
    on with `hitl_resolved`)."""

    event_type: Literal["hitl"]
    data: HitlData
    _decide: Decide | None = PrivateAttr(default=None)

    def bind(self, decide: Decide) -> HitlEvent:
        self._decide = decide
        return self

    def approve(self) -> Any:
        return self.decide({"type": "approve"})

    def reject(self, reason: str | None = None) -> Any:
        return self.decide({"type": "reject"} | ({"message": reason} if reason else {}))

    def edit(self, sql: str | None = None, **args: Any) -> Any:
        return self.decide({"type": "edit", "args": ({"sql": sql} if sql is not None else {}) | args})

    def decide(self, decision: dict[str, Any]) -> Any:
        if self._decide is None:
            raise RuntimeError("this hitl event was not received through a client")
        return self._decide(decision)


class HitlResolvedEvent(BaseEvent):
    event_type: Literal["hitl_resolved"]
    data: HitlResolvedData


class ErrorEvent(BaseEvent):
    event_type: Literal["error"]
    data: ErrorData


class DoneEvent(BaseEvent):
    event_type: Literal["done"]
    data: DoneData


class PongEvent(BaseEvent):
    event_type: Literal["pong"]
    data: PongData


class QueuedEvent(BaseEvent):
    """The question was queued behind the running answer (`multitask_strategy: enqueue`); position 1 runs next."""

    event_type: Literal["queued"]
    data: QueuedData


class UnknownEvent(BaseEvent):
    """An event type this client does not know (a newer server): its data as a dict."""

    data: dict[str, Any]


Event = (
    ConnectedEvent | ResumedEvent | RunStartedEvent | TextEvent | ToolCallEvent | ToolResultEvent | HitlEvent
    | HitlResolvedEvent | ErrorEvent | DoneEvent | PongEvent | QueuedEvent | UnknownEvent
)
EVENT_TYPES: dict[str, type[BaseEvent]] = {
    "connected": ConnectedEvent, "resumed": ResumedEvent, "run_started": RunStartedEvent, "text": TextEvent,
    "tool_call": ToolCallEvent, "tool_result": ToolResultEvent, "hitl": HitlEvent,
    "hitl_resolved": HitlResolvedEvent, "error": ErrorEvent, "done": DoneEvent, "pong": PongEvent,
    "queued": QueuedEvent,
}


def parse_event(frame: dict[str, Any]) -> Event:
    """A server frame as its typed event (`UnknownEvent` for a type this client does not know)."""
    kind = EVENT_TYPES.get(str(frame.get("event_type")), UnknownEvent)
    return cast(Event, kind.model_validate(frame))
