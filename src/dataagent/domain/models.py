"""Entities and value objects: sessions, messages and the run state machine."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dataagent.domain.errors import InvalidInputError, InvalidTransitionError

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # use fullmatch: `$` would accept a final newline
TITLE_MAX_CHARS = 60


def validate_session_id(session_id: str) -> str:
    """Return the id if it is 1..64 characters of [A-Za-z0-9_-], else raise InvalidInputError."""
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise InvalidInputError(
            "session_id must be 1..64 characters of [A-Za-z0-9_-]", details={"session_id": session_id[:80]}
        )
    return session_id


def title_from(question: str) -> str:
    """The default session title: the first question on one line, cut."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_MAX_CHARS else line[: TITLE_MAX_CHARS - 1] + "…"


class Role(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED})
_ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.PENDING: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.RUNNING: frozenset(
        {RunStatus.AWAITING_APPROVAL, RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED}
    ),
    RunStatus.AWAITING_APPROVAL: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.COMPLETED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.FAILED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class Session:
    """A conversation owned by one principal (`user_id`) and, when a request named one, its end user."""

    session_id: str
    user_id: str
    title: str
    created_at: datetime
    last_active: datetime
    message_count: int = 0
    active_run_id: str | None = None
    pending_interrupt: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    stored_bytes: int = 0  # what its messages count (stored_size), kept by the store on each append
    end_user: str | None = None  # the end user of the principal it was created for (X-User-ID), or None


@dataclass(frozen=True, slots=True)
class Message:
    """One persisted message; `position` orders a session's messages (0, 1, 2, ... gap-free)."""

    message_id: str
    session_id: str
    role: Role
    content: str
    created_at: datetime
    run_id: str | None = None
    status: str = "completed"
    metadata: dict[str, Any] = field(default_factory=dict)
    position: int = -1


def stored_size(content: str, metadata: dict[str, Any] | None) -> int:
    """What a message counts toward its session's stored bytes: its content and its metadata as compact JSON,
    in UTF-8 (the same in every store)."""
    size = len(content.encode("utf-8", "replace"))
    if metadata:
        size += len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), default=str)
                    .encode("utf-8", "replace"))
    return size


@dataclass(frozen=True, slots=True)
class RunState:
    """What a session records about its answer: the active run (None: none) and the approval it waits for."""

    active_run_id: str | None
    pending_interrupt: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MessagePageQuery:
    """One page of a session's history: offset paging, or a cursor (`after` / `before` a message id)."""

    limit: int = 100
    offset: int = 0
    after: str | None = None
    before: str | None = None

    def __post_init__(self) -> None:
        if self.after is not None and self.before is not None:
            raise InvalidInputError("'after' and 'before' exclude each other")
        if (self.after is not None or self.before is not None) and self.offset:
            raise InvalidInputError("'offset' cannot be combined with a cursor")
        if self.limit < 1 or self.offset < 0:
            raise InvalidInputError("limit must be >= 1 and offset >= 0")


@dataclass(frozen=True, slots=True)
class MessagePage:
    messages: list[Message]
    total: int
    has_more: bool


@dataclass(slots=True)
class ChatRun:
    """One answer being produced in a session. Its status only moves along the allowed transitions."""

    run_id: str
    session_id: str
    question: str
    started_at: datetime
    status: RunStatus = RunStatus.PENDING
    text: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    token_usage: TokenUsage | None = None
    reason: str | None = None
    error: str | None = None
    user_message_id: str | None = None

    def transition(self, target: RunStatus) -> None:
        if target not in _ALLOWED[self.status]:
            raise InvalidTransitionError(f"run {self.run_id}: {self.status} -> {target} is not allowed")
        self.status = target

    def can_transition(self, target: RunStatus) -> bool:
        return target in _ALLOWED[self.status]

    @property
    def content(self) -> str:
        return "".join(self.text)

    def add_usage(self, usage: TokenUsage) -> None:
        self.token_usage = usage if self.token_usage is None else self.token_usage + usage
