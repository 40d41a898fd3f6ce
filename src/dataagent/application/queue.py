"""Double-texting: what a question does when its session is already answering one (multitask_strategy).

`reject` refuses it (run_in_progress); `interrupt` cancels the current answer (its partial is kept) and runs it;
`enqueue` stores it in the session's queue, in the session store, so no worker loses it. The queue is drained by
the process whose run ends (and by every enqueue): it claims the session for the head's run id, takes the head
from the store (only one process can) and starts it. Deleting the session deletes its queue.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dataagent.application.hub import EventHub
from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.application.runs import RunManager
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.errors import (
    DataAgentError,
    NoActiveRunError,
    QueueFullError,
    RunInProgressError,
    SessionNotFoundError,
)
from dataagent.domain.events import EventType, done_payload
from dataagent.domain.models import ChatRun
from dataagent.domain.requests import MultitaskStrategy, QueuedRun

log = logging.getLogger("dataagent.queue")

DEFAULT_MAX_QUEUED = 5


class RunQueue:
    """Starts a session's runs by strategy; one per process (it receives the run manager's run ends)."""

    def __init__(
        self,
        repository: SessionRepository,
        broker: EventHub,
        runs: RunManager,
        clock: Clock,
        ids: IdGenerator,
        max_queued: int = DEFAULT_MAX_QUEUED,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._repo = repository
        self._telemetry = telemetry
        self._broker = broker
        self._runs = runs
        self._clock = clock
        self._ids = ids
        self._max_queued = max_queued
        self._drains: set[asyncio.Task[None]] = set()
        runs.after_run(self.run_ended)

    async def start(
        self, sid: str, question: str, metadata: dict[str, Any], max_bytes: int | None,
        strategy: MultitaskStrategy = MultitaskStrategy.REJECT, principal: str | None = None,
        end_user: str | None = None,
    ) -> ChatRun:
        """Start the question now, or (enqueue) queue it; the run (a queued one is still `pending`)."""
        if strategy is MultitaskStrategy.INTERRUPT:
            try:
                await self._runs.cancel(sid, reason="interrupted")
            except NoActiveRunError:
                pass
        try:
            return await self._runs.start_run(
                sid, question, metadata, max_bytes, principal=principal, end_user=end_user)
        except RunInProgressError:
            if strategy is MultitaskStrategy.REJECT:
                raise
        # enqueue, or an interrupt that lost the free session to a queued question: it goes first then
        return await self._enqueue(sid, question, metadata, max_bytes, front=strategy is MultitaskStrategy.INTERRUPT)

    async def _enqueue(
        self, sid: str, question: str, metadata: dict[str, Any], max_bytes: int | None, front: bool
    ) -> ChatRun:
        run = ChatRun(self._ids.new_id("run"), sid, question, self._clock.now())
        item = QueuedRun(sid, run.run_id, question, run.started_at, dict(metadata))
        place = await self._repo.enqueue_run(item, None if front else self._max_queued, front)
        if place is None:
            raise QueueFullError(
                f"This session already has {self._max_queued} queued questions",
                details={"max_queued": self._max_queued},
            )
        self._broker.publish(sid, run.run_id, EventType.QUEUED.value, {"run_id": run.run_id, "position": place})
        await self.drain(sid, max_bytes)  # the current answer may have ended meanwhile
        return run

    async def drain(self, sid: str, max_bytes: int | None = None) -> None:
        """Start the head of the session's queue if the session is free; repeat while a head fails to start."""
        while True:
            head = await self._repo.next_queued_run(sid)
            if head is None:
                return
            session = await self._repo.get_session(sid)
            if session is None:
                return
            try:
                await self._runs.start_run(  # the owner's data policy applies to a queued question too
                    sid, head.question, head.metadata, max_bytes, run_id=head.run_id, principal=session.user_id,
                    end_user=session.end_user,
                    admit=lambda head=head: self._repo.take_queued_run(sid, head.run_id),  # type: ignore[misc]
                )
                self._telemetry.queue_waited((self._clock.now() - head.queued_at).total_seconds())
                return
            except RunInProgressError:
                return  # the session is busy (or another process took the head): its run's end drains
            except SessionNotFoundError:
                return
            except DataAgentError as exc:  # the question cannot run (session_full...): its waiters are told
                await self._repo.take_queued_run(sid, head.run_id)
                self._broker.publish(sid, head.run_id, EventType.ERROR.value, {
                    "error_code": exc.code, "message": exc.message, "recoverable": False})
                self._broker.publish(sid, head.run_id, EventType.DONE.value,
                                     done_payload(head.run_id, "failed", None, None, exc.code))

    def run_ended(self, sid: str) -> None:
        """A run of the session has ended (here, or a dead owner's closed here): start its next question."""
        task = asyncio.create_task(self._drain_quietly(sid), name=f"drain:{sid}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain_quietly(self, sid: str) -> None:
        try:
            await self.drain(sid)
        except DataAgentError as exc:  # a store outage: the next run end or enqueue drains again
            log.warning("session %s: could not start its next queued question: %s", sid, exc.code)
        except Exception:  # noqa: BLE001 - anything else is a bug: its traceback
            log.exception("session %s: could not start its next queued question", sid)
