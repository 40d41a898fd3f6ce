"""The ports of the event transport under the hub (application/hub.py): a log of each session's events, the
claim of its one run and the control of it, and for a transport shared by processes, leases, a feed of events
numbered elsewhere, and a connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dataagent.domain.approvals import Decision
from dataagent.domain.events import RunEvent


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
