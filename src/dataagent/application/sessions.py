"""SessionService: list, read, delete and page a caller's sessions; expire idle ones.

The key itself (no end user named) lists and reads its end users' sessions too; deleting one needs the end user
named, like every other act on it (SessionWatch decides)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import timedelta

from dataagent.application.hub import EventHub
from dataagent.application.ports import Clock, SessionRepository
from dataagent.application.runs import RunManager
from dataagent.application.watch import SessionWatch
from dataagent.domain.callers import Caller, Who
from dataagent.domain.errors import BrokerUnavailableError, DataAgentError, NoActiveRunError
from dataagent.domain.models import MessagePage, MessagePageQuery, Session

log = logging.getLogger("dataagent.sessions")

EXPIRY_BATCH = 500


class SessionService:
    def __init__(
        self, repository: SessionRepository, runs: RunManager, clock: Clock, broker: EventHub,
        watch: SessionWatch | None = None,
    ) -> None:
        self._repo = repository
        self._runs = runs
        self._clock = clock
        self._broker = broker
        self._watch = watch or SessionWatch(repository, broker)

    async def list_sessions(self, principal: Who, limit: int, offset: int) -> tuple[list[Session], int]:
        """The end user's sessions; for the key itself all of its sessions, its end users' too (their active runs
        as `get` shows them)."""
        caller = Caller.of(principal)
        sessions, total = await self._repo.list_sessions(caller.principal, limit, offset, caller.end_user)
        return [await self._with_claimed_run(s) for s in sessions], total

    async def get(self, principal: Who, session_id: str) -> Session:
        """The caller's session to read; SessionNotFoundError if missing or someone else's (SessionWatch decides)."""
        return await self._with_claimed_run(await self._watch.visible(principal, session_id))

    async def _with_claimed_run(self, session: Session) -> Session:
        """The session with the run the hub has claimed as its active one: a run whose end the store could not
        record (an outage at its end) is not shown as running (nor its approval as pending) once it has ended.
        Asks the hub only of a session the store says is running."""
        if session.active_run_id is None:
            return session
        try:
            claimed = await self._broker.active_run(session.session_id)
        except BrokerUnavailableError:
            return session  # the store's word, then
        if claimed == session.active_run_id:
            return session
        return replace(session, active_run_id=claimed, pending_interrupt=None)

    async def delete(self, principal: Who, session_id: str) -> None:
        """Cancel a running answer, then delete the session and its messages; its sockets and events go too."""
        session = await self._watch.owned(principal, session_id)
        if session.active_run_id is not None:
            with contextlib.suppress(NoActiveRunError):
                await self._runs.cancel(session_id, reason="session_deleted")
        await self._repo.delete_session(session_id)
        await self._forget([session_id])

    async def messages(self, principal: Who, session_id: str, query: MessagePageQuery) -> MessagePage:
        await self.get(principal, session_id)
        return await self._repo.list_messages(session_id, query)

    async def expire_idle(self, timeout_s: float) -> list[str]:
        """Delete sessions idle for longer than `timeout_s` (never one with an active run), and the idempotency
        keys that expired."""
        now = self._clock.now()
        while await self._repo.delete_expired_requests(now, EXPIRY_BATCH) == EXPIRY_BATCH:
            pass
        cutoff = now - timedelta(seconds=timeout_s)
        expired: list[str] = []
        while True:
            batch = await self._repo.delete_idle_sessions(cutoff, EXPIRY_BATCH)
            await self._forget(batch)
            expired.extend(batch)
            if len(batch) < EXPIRY_BATCH:
                return expired

    async def _forget(self, session_ids: list[str]) -> None:
        """A session gone from the store takes its sockets (4404), replay buffer and channel with it, on every
        process, so that a later session with the same id shares nothing with it."""
        for session_id in session_ids:
            try:
                await self._broker.drop_session(session_id)
            except DataAgentError as exc:  # its sockets still fail the ownership check of every acting frame
                log.warning("session %s is gone but its sockets could not be told: %s", session_id, exc.code)
