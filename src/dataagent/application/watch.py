"""SessionWatch: whose a session id is, and watching its events; the one ownership decision of REST, WebSocket
and SSE.

The owner is read from the store on every call, never remembered: a session may be deleted or expire, and
its id then be taken by another principal (docs/SECURITY.md). A session belongs to a principal and, when the
request that created it named one, an end user (domain/callers.py): another end user of the same key sees it as
foreign; the key itself (no end user named) may read and watch it but not act on it (403 forbidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dataagent.application import logcontext
from dataagent.application.hub import EventHub
from dataagent.application.ports import SessionRepository
from dataagent.application.streams import Subscription
from dataagent.domain.callers import Caller, Who
from dataagent.domain.errors import ForbiddenError, SessionNotFoundError
from dataagent.domain.events import RunEvent
from dataagent.domain.models import Session


class Ownership(StrEnum):
    OWNED = "owned"  # the caller's session: the principal's, and the same end user (or none on both)
    UNUSED = "unused"  # nobody uses the id: the caller's first chat on it creates the session
    FOREIGN = "foreign"  # another principal's or end user's: session_not_found, never told apart from missing
    VISIBLE = "visible"  # one of the key's end users' sessions, seen by the key itself: read, watch, never act

    @property
    def readable(self) -> bool:
        """Whether the caller may read and watch the session (its own, or the key's end users' for the key)."""
        return self in (Ownership.OWNED, Ownership.VISIBLE)


def ownership_of(session: Session | None, who: Who) -> Ownership:
    caller = Caller.of(who)
    if session is None:
        return Ownership.UNUSED
    if session.user_id != caller.principal:
        return Ownership.FOREIGN
    if session.end_user == caller.end_user:
        return Ownership.OWNED
    return Ownership.VISIBLE if caller.end_user is None else Ownership.FOREIGN


def require_owned(ownership: Ownership) -> None:
    """Acting on a session: SessionNotFoundError unless it is the caller's, ForbiddenError for the key itself on
    an end user's session (it names the end user to act)."""
    if ownership is Ownership.VISIBLE:
        raise ForbiddenError("This session belongs to an end user: name it (X-User-ID) to act on the session")
    if ownership is not Ownership.OWNED:
        raise SessionNotFoundError()


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

    async def ownership(self, principal: Who, session_id: str) -> Ownership:
        """Whose the id is, read now."""
        logcontext.bind(session_id=session_id)
        return ownership_of(await self._repo.get_session(session_id), principal)

    async def owned(self, principal: Who, session_id: str) -> Session:
        """The caller's session, to act on; SessionNotFoundError if missing or someone else's, ForbiddenError if
        the key itself acts on one of its end users' sessions."""
        logcontext.bind(session_id=session_id)
        session = await self._repo.get_session(session_id)
        require_owned(ownership_of(session, principal))
        assert session is not None
        return session

    async def visible(self, principal: Who, session_id: str) -> Session:
        """The caller's session, or one of its key's end users' for the key itself, to read; SessionNotFoundError
        if missing or someone else's."""
        session = await self._repo.get_session(session_id)
        if not ownership_of(session, principal).readable:
            raise SessionNotFoundError()
        assert session is not None
        return session

    async def watch(
        self, principal: Who, session_id: str, after_seq: int | None, maxsize: int
    ) -> WatchResult:
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

    async def resume(self, principal: Who, session_id: str, after_seq: int) -> Replay:
        """The held events after `after_seq` of the principal's session. None of an unused id (what a deleted
        session's last run still publishes is not the asker's), but whether any are missing; nothing of a foreign
        one."""
        ownership = await self.ownership(principal, session_id)
        if ownership is Ownership.FOREIGN:
            return Replay(ownership)
        events, complete = await self._broker.replay(session_id, after_seq)
        return Replay(ownership, events if ownership.readable else [], complete)
