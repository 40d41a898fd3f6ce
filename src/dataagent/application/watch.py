"""SessionWatch: whose a session id is, and watching its events; the one ownership decision of REST, WebSocket
and SSE.

The owner is read from the store on every call, never remembered: a session may be deleted or expire, and
its id then be taken by another principal (docs/SECURITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dataagent.application import logcontext
from dataagent.application.hub import EventHub
from dataagent.application.ports import SessionRepository
from dataagent.application.streams import Subscription
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import RunEvent
from dataagent.domain.models import Session


class Ownership(StrEnum):
    OWNED = "owned"  # the principal's session
    UNUSED = "unused"  # nobody uses the id: the principal's first chat on it creates the session
    FOREIGN = "foreign"  # another principal's: answered as session_not_found, never told apart from missing


def ownership_of(session: Session | None, principal: str) -> Ownership:
    if session is None:
        return Ownership.UNUSED
    return Ownership.OWNED if session.is_owned_by(principal) else Ownership.FOREIGN


@dataclass(slots=True)
class WatchResult:
    """A watch's start: for FOREIGN no subscription (the caller answers session_not_found)."""

    ownership: Ownership
    subscription: Subscription | None = None
    last_seq: int = 0
    active_run_id: str | None = None


@dataclass(slots=True)
class Replay:
    """A resume's answer: the held events after the seq asked for (only of an owned session), and whether they
    are all there (False: some were evicted, or the seq is from before a restart or an earlier life of the id)."""

    ownership: Ownership
    events: list[RunEvent] = field(default_factory=list)
    complete: bool = True


class SessionWatch:
    def __init__(self, repository: SessionRepository, broker: EventHub) -> None:
        self._repo = repository
        self._broker = broker

    async def ownership(self, principal: str, session_id: str) -> Ownership:
        """Whose the id is, read now."""
        logcontext.bind(session_id=session_id)
        return ownership_of(await self._repo.get_session(session_id), principal)

    async def owned(self, principal: str, session_id: str) -> Session:
        """The principal's session; SessionNotFoundError if missing or someone else's."""
        logcontext.bind(session_id=session_id)
        session = await self._repo.get_session(session_id)
        if session is None or not session.is_owned_by(principal):
            raise SessionNotFoundError()
        return session

    async def watch(self, principal: str, session_id: str, after_seq: int | None, maxsize: int) -> WatchResult:
        """Subscribe to the session's events (replayed after `after_seq`, or the active run's from its start)
        unless the id is another principal's. An unused id is watched too: the events of the session the
        principal creates on it follow, and whoever watches checks the owner again at each run's start."""
        ownership = await self.ownership(principal, session_id)
        if ownership is Ownership.FOREIGN:
            return WatchResult(ownership)
        subscription = await self._broker.subscribe(session_id, after_seq, maxsize)
        try:
            last_seq = await self._broker.last_seq(session_id)
            active_run_id = await self._broker.active_run(session_id)
        except BaseException:
            subscription.close()
            raise
        return WatchResult(ownership, subscription, last_seq, active_run_id)

    async def resume(self, principal: str, session_id: str, after_seq: int) -> Replay:
        """The held events after `after_seq` of the principal's session. None of an unused id (what a deleted
        session's last run still publishes is not the asker's), but whether any are missing; nothing of a foreign
        one."""
        ownership = await self.ownership(principal, session_id)
        if ownership is Ownership.FOREIGN:
            return Replay(ownership)
        events, complete = await self._broker.replay(session_id, after_seq)
        return Replay(ownership, events if ownership is Ownership.OWNED else [], complete)
