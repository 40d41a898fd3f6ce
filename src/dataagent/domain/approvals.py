"""Human-in-the-loop: an approval request for a risky action and the decision on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dataagent.domain.errors import InvalidInputError


class DecisionType(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"


class DecisionSource(StrEnum):
    CLIENT = "client"
    TIMEOUT = "timeout"
    CANCEL = "cancel"


ALL_DECISIONS: tuple[str, ...] = tuple(d.value for d in DecisionType)


@dataclass(frozen=True, slots=True)
class ApprovalAction:
    name: str
    args: dict[str, Any]
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "args": dict(self.args), "description": self.description}


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    interrupt_id: str
    session_id: str
    run_id: str
    action: ApprovalAction
    expires_at: datetime
    allowed_decisions: tuple[str, ...] = ALL_DECISIONS

    def event_data(self) -> dict[str, Any]:
        """The `data` of the `hitl` event (and SessionInfo.pending_interrupt)."""
        return {
            "interrupt_id": self.interrupt_id,
            "action": self.action.as_dict(),
            "allowed_decisions": list(self.allowed_decisions),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    type: DecisionType
    args: dict[str, Any] | None = None
    message: str | None = None
    source: DecisionSource = DecisionSource.CLIENT

    @classmethod
    def parse(cls, raw: dict[str, Any], source: DecisionSource = DecisionSource.CLIENT) -> Decision:
        """Build a decision from a client's `{type, args?, message?}`; raise InvalidInputError if malformed."""
        try:
            kind = DecisionType(str(raw.get("type")))
        except ValueError:
            raise InvalidInputError("decision type must be approve, reject or edit") from None
        args = raw.get("args")
        if args is not None and not isinstance(args, dict):
            raise InvalidInputError("decision args must be an object")
        if kind is DecisionType.EDIT and not args:
            raise InvalidInputError("an edit decision needs args")
        message = raw.get("message")
        if message is not None and not isinstance(message, str):
            raise InvalidInputError("decision message must be a string")
        return cls(kind, args, message, source)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.value, "source": self.source.value}
        if self.args is not None:
            out["args"] = dict(self.args)
        if self.message is not None:
            out["message"] = self.message
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Decision:
        return cls(
            DecisionType(raw["type"]), raw.get("args"), raw.get("message"),
            DecisionSource(raw.get("source", "client")),
        )


@dataclass(slots=True)
class InterruptRecord:
    """A stored approval request and, once decided, its decision (the first decision wins)."""

    request: ApprovalRequest
    decision: Decision | None = None
    decided_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
