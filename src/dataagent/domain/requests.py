"""Idempotent requests and queued questions: what the store keeps so a retry or a second message is defined."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dataagent.domain.errors import InvalidInputError

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces (use fullmatch)


class MultitaskStrategy(StrEnum):
    """What a question does to a session that is already answering one (PROTOCOL.md, double-texting)."""

    REJECT = "reject"  # 409 run_in_progress
    ENQUEUE = "enqueue"  # stored, and runs when the current answer (and those queued before it) ended
    INTERRUPT = "interrupt"  # the current answer is cancelled (its partial kept), then this one runs

    @classmethod
    def parse(cls, value: Any) -> MultitaskStrategy:
        if value is None:
            return cls.REJECT
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(
                "multitask_strategy must be one of reject, enqueue, interrupt", details={"value": str(value)[:40]}
            ) from None


def validate_key(key: Any) -> str:
    """An Idempotency-Key (or client_message_id): 1..128 printable ASCII characters without spaces."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInputError("an idempotency key must be 1..128 printable ASCII characters without spaces")
    return key


def fingerprint(*parts: Any) -> str:
    """The digest of a request's meaning (its route and body): a retry must carry the same one."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class RequestRecord:
    """One idempotency key of a principal: the first request's digest, and its outcome once it has one."""

    principal: str
    key: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    outcome: dict[str, Any] | None = None


@dataclass(slots=True)
class QueuedRun:
    """A question waiting for its session's current answer to end; it runs as `run_id`."""

    session_id: str
    run_id: str
    question: str
    queued_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
