"""A typed Python client of DataAgent Server (docs/PROTOCOL.md), sync and async, outside the server's layers.

    with DataAgentClient("http://127.0.0.1:8000", api_key="...") as client:
        result = client.ask("select name, city from customers limit 5")
        if result.interrupt:
            result = result.interrupt.approve()
        print(result.tables[0].rows)
"""

from dataagent.client.aclient import AsyncDataAgentClient
from dataagent.client.bodies import ChatResult, Message, RunHandle, SessionInfo
from dataagent.client.errors import (
    ApiError,
    BrokerUnavailable,
    CapacityExceeded,
    ConnectionLost,
    DataAgentClientError,
    DecisionConflict,
    Forbidden,
    InternalError,
    InterruptNotFound,
    MessageNotFound,
    NoActiveRun,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RecoveryFailed,
    ReplayUnavailable,
    RunInProgress,
    ServiceUnavailable,
    SessionFull,
    SessionNotFound,
    StoreUnavailable,
    TooManySessions,
    Unauthorized,
    ValidationFailed,
)
from dataagent.client.models import (
    ConnectedEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    HitlEvent,
    HitlResolvedEvent,
    QueuedEvent,
    RunStartedEvent,
    Table,
    TextEvent,
    ToolCallEvent,
    ToolResultEvent,
    UnknownEvent,
)
from dataagent.client.sync import DataAgentClient

__all__ = [
    "ApiError", "AsyncDataAgentClient", "BrokerUnavailable", "CapacityExceeded", "ChatResult", "ConnectedEvent",
    "Forbidden",
    "ConnectionLost", "DataAgentClient", "DataAgentClientError", "DecisionConflict", "DoneEvent", "ErrorEvent",
    "Event", "HitlEvent", "HitlResolvedEvent", "InternalError", "InterruptNotFound", "Message", "MessageNotFound",
    "NoActiveRun", "NotFound", "PayloadTooLarge", "RateLimited", "RecoveryFailed", "ReplayUnavailable", "RunHandle",
    "QueuedEvent", "RunInProgress", "RunStartedEvent", "ServiceUnavailable", "SessionFull", "SessionInfo",
    "SessionNotFound",
    "StoreUnavailable", "Table", "TextEvent", "TooManySessions", "ToolCallEvent", "ToolResultEvent",
    "Unauthorized", "UnknownEvent", "ValidationFailed",
]
