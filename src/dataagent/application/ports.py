"""Ports: what the core needs from the outside world. Adapters implement these Protocols."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dataagent.domain.approvals import ApprovalAction, Decision, InterruptRecord
from dataagent.domain.events import AgentOutput, RunEvent
from dataagent.domain.models import Message, MessagePage, MessagePageQuery, RunState, Session


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

    async def list_sessions(self, user_id: str, limit: int, offset: int) -> tuple[list[Session], int]:
        """A page of the principal's sessions, most recently active first, and their total."""
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


class AgentEngine(Protocol):
    """Produces one answer as a stream of AgentOutput; may await approvals through the context."""

    name: str

    def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        """Yield the run's outputs; cancellation may arrive at any await."""
        ...

    async def close(self) -> None:
        """Release clients and pools."""
        ...


@dataclass(frozen=True, slots=True)
class RunControl:
    """A command for the process that owns a run: cancel it, or deliver an approval decision."""

    kind: str  # "cancel" | "decision"
    session_id: str
    run_id: str
    reason: str = "user"
    interrupt_id: str | None = None
    decision: Decision | None = None


ControlHandler = Callable[[RunControl], Awaitable[None]]
FinalEvent = tuple[str, dict[str, Any]]  # (event_type, data) of a run's last event, its `done`
# Called with (session_id, run_id) of a run whose owner died; returns the run's `done`, published at release.
OrphanHandler = Callable[[str, str], Awaitable[FinalEvent | None]]


@dataclass(frozen=True, slots=True)
class Held:
    """What an event log holds of a session after a seq, read at one instant."""

    events: list[RunEvent]    # the held events numbered above `after_seq`, ascending
    after_seq: int            # the seq asked for (None asked: the active run's start - 1, or `last`)
    last: int                 # the last seq of the session's numbering the log knows of
    floor: int | None         # its numbering started above this and every event since is held; None: some went
    active_run: str | None    # the session's active run


class EventLog(Protocol):
    """Holds a session's events for replay, numbered by the hub (application/hub.py)."""

    def holder(self, session_id: str) -> Callable[[RunEvent], None]:
        """What holds the session's events the hub numbers (the per-token path: never blocks, never raises);
        valid until the session is dropped or forgotten."""
        ...

    def known_last(self, session_id: str) -> int:
        """The last seq this process knows for the session, without waiting (0: it knows none)."""
        ...

    async def read(self, session_id: str, after_seq: int | None) -> Held:
        """The held events after `after_seq` (None: from the active run's `run_started`; 0: all held)."""
        ...

    async def last_seq(self, session_id: str) -> int:
        """The last seq of the session's numbering, which starts above `floor_seq()` if it has none."""
        ...

    async def drop(self, session_id: str) -> int:
        """Forget the session's held events; the seq above which its next life numbers (above all it issued)."""
        ...

    def forget(self, session_id: str) -> bool:
        """Free what this process keeps for a session nobody here uses; False if it must stay (unwritten work)."""
        ...


class RunClaims(Protocol):
    """One active run per session, and the control channel to the process that owns a run."""

    async def claim(self, session_id: str, run_id: str) -> int | None:
        """Make `run_id` the session's active run, owned here: the last seq to number on from; None if taken."""
        ...

    async def release(self, session_id: str, run_id: str) -> None:
        """End this process's claim of `run_id` (no-op if it is not the claimant), after the events appended."""
        ...

    async def active_run(self, session_id: str) -> str | None:  # the session's active run, wherever it runs
        ...

    async def send_control(self, control: RunControl) -> None:
        """Deliver `control` to the process that owns the run."""
        ...

    def on_control(self, handler: ControlHandler) -> None:
        """Register the handler that receives control for runs this process owns."""
        ...



# Called with (session_id, run_id, owner) of a run whose lease this process took from a dead owner.
ExpiredHandler = Callable[[str, str, str], Awaitable[None]]


class Leases(Protocol):
    """Runs shared between processes: an owner renews its runs' leases; an expired one is closed elsewhere."""

    @property
    def lease_renew_interval_s(self) -> float:
        """How often an owner renews its runs' leases and checkpoints them."""
        ...

    async def renew(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Renew the leases of these (session_id, run_id) runs and store their checkpoints."""
        ...

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        """The last checkpoint an owner stored for the run, or None."""
        ...

    def on_expired(self, handler: ExpiredHandler) -> None:
        """Register the handler called (in exactly one process) for a lease nobody renewed in time."""
        ...

    async def release_orphan(self, session_id: str, run_id: str, owner: str) -> None:
        """End the dead `owner`'s claim of `run_id`, after the events appended."""
        ...

    async def relapse(self, session_id: str, run_id: str, owner: str) -> None:
        """Put back the lease of a run whose closing failed: the sweep tries again later."""
        ...


class FeedListener(Protocol):
    """The hub, as a shared log's feed sees it: where each watched session stands, and what to hand on."""

    def positions(self) -> dict[str, int]:
        """Sessions numbered elsewhere that subscribers here watch, each with the last seq delivered."""
        ...

    def watching(self) -> list[str]:  # sessions with subscribers here
        ...

    def deliver(self, session_id: str, events: list[RunEvent]) -> None:
        """Events another process numbered: to this process's subscribers, each once, in order."""
        ...

    def dropped(self, session_id: str, base: int) -> None:
        """The session was dropped (on any process); its next life numbers above `base`."""
        ...


class Feed(Protocol):
    """A log shared by several processes: it hands events numbered elsewhere to the hub."""

    def attach(self, listener: FeedListener) -> None:  # the hub to hand events and drops to
        ...

    async def watch(self, session_id: str) -> None:
        """Say that this process has subscribers of the session (its owner then flushes it promptly)."""
        ...


class Connection(Protocol):
    """A transport reached over the network, with background work of its own."""

    async def start(self) -> None:  # connect and start background work
        ...

    async def close(self) -> None:  # stop background work and release connections
        ...

    async def ping(self) -> None:  # BrokerUnavailableError if the transport cannot be reached
        ...


class SharedTransport(Leases, Feed, Connection, Protocol):
    """What a transport shared by several processes adds to EventLog and RunClaims."""
