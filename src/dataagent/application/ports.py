"""Ports: what the core needs from the outside world. Adapters implement these Protocols."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dataagent.domain.approvals import ApprovalAction, Decision, InterruptRecord
from dataagent.domain.callers import Caller
from dataagent.domain.events import AgentOutput
from dataagent.domain.feedback import VerifiedQuery
from dataagent.domain.models import Message, MessagePage, MessagePageQuery, RunState, Session
from dataagent.domain.requests import QueuedRun, RequestRecord


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    def new_id(self, prefix: str) -> str:
        """A fresh unique id starting with `prefix` (only [A-Za-z0-9_-])."""
        ...


class SessionRepository(Protocol):
    """Sessions, their messages and their approval records. Each method is atomic on its own."""

    async def start(self) -> None:
        """Connect and create the schema if missing; StoreUnavailableError if the store cannot be used."""
        ...

    async def get_or_create_session(self, session: Session) -> tuple[Session, bool]:
        """Return the stored session with this id, or store `session`; the bool says it was created."""
        ...

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None."""
        ...

    async def list_sessions(
        self, user_id: str, limit: int, offset: int, end_user: str | None = None
    ) -> tuple[list[Session], int]:
        """A page of the principal's sessions (with `end_user`, only that end user's), most recently active first,
        and their total."""
        ...

    async def count_sessions(self, user_id: str) -> int:
        """How many sessions the principal holds (its end users' included): the bound on new sessions."""
        ...

    async def set_run_state(
        self,
        session_id: str,
        *,
        active_run_id: str | None,
        pending_interrupt: dict[str, Any] | None,
        touched_at: datetime | None = None,
    ) -> None:
        """Record the session's active run and pending approval; `touched_at` moves last_active."""
        ...

    async def list_active_runs(self) -> list[tuple[str, str]]:
        """(session_id, active_run_id) of every session that records an active run."""
        ...

    async def clear_run_states(self) -> int:
        """Forget every session's active run and pending approval (the runs died with their process)."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session with its messages and approvals; False if it did not exist."""
        ...

    async def append_message(
        self, message: Message, run_state: RunState | None = None, max_session_bytes: int | None = None
    ) -> Message:
        """Append at the session's next position (gap-free); bump message_count, stored_bytes and last_active;
        with `run_state`, record the session's run state in the same transaction; with `max_session_bytes`,
        SessionFullError (nothing written) if the message would take stored_bytes past it."""
        ...

    async def get_message(self, session_id: str, message_id: str) -> Message | None:
        """One message of the session, or None."""
        ...

    async def list_messages(self, session_id: str, query: MessagePageQuery) -> MessagePage:
        """A page of the session's history, oldest first; MessageNotFoundError for an unknown cursor."""
        ...

    async def save_interrupt(self, record: InterruptRecord) -> None:
        """Store a new, undecided approval request."""
        ...

    async def get_interrupt(self, session_id: str, interrupt_id: str) -> InterruptRecord | None:
        """The approval record of the session, or None."""
        ...

    async def resolve_interrupt(
        self, session_id: str, interrupt_id: str, decision: Decision, decided_at: datetime
    ) -> bool:
        """Record the decision if the interrupt is still undecided (compare-and-set); True if it won."""
        ...

    async def delete_idle_sessions(self, idle_before: datetime, limit: int) -> list[str]:
        """Delete up to `limit` sessions idle since before `idle_before` with no active run."""
        ...

    async def claim_request(self, record: RequestRecord) -> RequestRecord | None:
        """Store the key if the principal holds no unexpired record of it (None: stored, this request goes
        first); else the held record, unchanged. Concurrent claims of one key: exactly one stores it."""
        ...

    async def get_request(self, principal: str, key: str, now: datetime) -> RequestRecord | None:
        """The principal's unexpired record of the key, or None."""
        ...

    async def settle_request(self, principal: str, key: str, outcome: dict[str, Any]) -> None:
        """Record the outcome of the request that claimed the key."""
        ...

    async def release_request(self, principal: str, key: str) -> None:
        """Forget the key (its first request failed before it had an outcome: a retry runs anew)."""
        ...

    async def delete_expired_requests(self, now: datetime, limit: int) -> int:
        """Delete up to `limit` records expired at `now`; how many went."""
        ...

    async def enqueue_run(self, item: QueuedRun, max_queued: int | None, front: bool = False) -> int | None:
        """Queue a question at the end (or, with `front`, the head) of its session's queue; its place (1 is
        next), or None if `max_queued` are queued already. SessionNotFoundError if the session is gone."""
        ...

    async def next_queued_run(self, session_id: str) -> QueuedRun | None:
        """The head of the session's queue, left in place."""
        ...

    async def take_queued_run(self, session_id: str, run_id: str) -> bool:
        """Remove that question from the queue; True if this call removed it (deleting a session empties it)."""
        ...

    async def ping(self) -> None:
        """Raise StoreUnavailableError if the store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@dataclass(slots=True)
class RunContext:
    """What an engine gets for one run."""

    session_id: str
    run_id: str
    question: str
    metadata: dict[str, Any]
    request_approval: Callable[[ApprovalAction], Awaitable[Decision]]
    load_history: Callable[[int], Awaitable[list[Message]]]
    extra: dict[str, Any] = field(default_factory=dict)
    principal: str | None = None  # the session owner (the API key's name); data policies apply to it
    examples: tuple[VerifiedQuery, ...] = ()  # verified queries like the question (run_started names them)
    end_user: str | None = None  # the owner's end user the session was created for (X-User-ID), if any

    @property
    def subject(self) -> str | None:
        """Whom the data policy applies to: the principal, or `principal:end_user` (domain/callers.py)."""
        return None if self.principal is None else Caller(self.principal, self.end_user).subject


class AgentEngine(Protocol):
    """Produces one answer as a stream of AgentOutput; may await approvals through the context."""

    name: str

    def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        """Yield the run's outputs; cancellation may arrive at any await."""
        ...

    async def close(self) -> None:
        """Release clients and pools."""
        ...
