"""ChatService: ask a question (streamed or waited for), cancel an answer, decide an approval."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from dataagent.application.bounds import Bounds
from dataagent.application.hub import EventHub
from dataagent.application.limits import Limits, who_of
from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.application.queue import RunQueue
from dataagent.application.runs import RunManager
from dataagent.application.streams import Subscription
from dataagent.application.transport import RunControl
from dataagent.application.watch import SessionWatch, ownership_of, require_owned
from dataagent.domain.approvals import Decision
from dataagent.domain.callers import Caller, Who
from dataagent.domain.errors import (
    DecisionConflictError,
    InterruptNotFoundError,
    InvalidInputError,
)
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.inputs import JsonLimits, valid_text
from dataagent.domain.models import ChatRun, Session, title_from, validate_session_id
from dataagent.domain.requests import MultitaskStrategy

SYNC_BUFFER_EVENTS = 100_000
_STOPS = (EventType.DONE, EventType.HITL)


@dataclass(frozen=True, slots=True)
class ChatSettings:
    max_message_chars: int = 32000
    json_limits: JsonLimits = field(default_factory=JsonLimits)


@dataclass(slots=True)
class RunOutcome:
    """What a waited-for run returns: its end, or the approval it waits for."""

    session_id: str
    run_id: str
    status: str
    content: str
    message_id: str | None
    events: list[RunEvent] = field(default_factory=list)


class ChatService:
    def __init__(
        self,
        repository: SessionRepository,
        broker: EventHub,
        runs: RunManager,
        clock: Clock,
        ids: IdGenerator,
        settings: ChatSettings | None = None,
        bounds: Bounds | None = None,
        watch: SessionWatch | None = None,
        queue: RunQueue | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._repo = repository
        self._broker = broker
        self._runs = runs
        self._clock = clock
        self._ids = ids
        self._settings = settings or ChatSettings()
        self._bounds = bounds or Bounds(repository)
        self._watch = watch or SessionWatch(repository, broker)
        self._queue = queue or RunQueue(repository, broker, runs, clock, ids)
        self._limits = limits or Limits()

    # -- sessions as seen by one principal ------------------------------------------------------

    async def open_session(self, principal: Who, session_id: str | None, question: str) -> Session:
        """The caller's session with this id, created if nobody uses the id (a new id if None)."""
        caller = Caller.of(principal)
        sid = validate_session_id(session_id) if session_id is not None else self._ids.new_id("s")
        now = self._clock.now()
        session, created = await self._repo.get_or_create_session(
            Session(sid, caller.principal, title_from(question), now, now, end_user=caller.end_user)
        )
        require_owned(ownership_of(session, caller))
        if created:
            await self._bounds.admit_new_session(session)
        return session

    def validate_message(self, message: Any) -> str:
        if not isinstance(message, str) or not message.strip():
            raise InvalidInputError("message must be a non-empty string")
        if len(message) > self._settings.max_message_chars:
            raise InvalidInputError(
                f"message is longer than {self._settings.max_message_chars} characters",
                details={"max_chars": self._settings.max_message_chars, "length": len(message)},
            )
        return valid_text(message)

    def validate_metadata(self, metadata: Any) -> dict[str, Any]:
        """The client's metadata with valid text, within the JSON bounds (checked before anything is stored)."""
        if metadata is None:
            return {}
        if not isinstance(metadata, dict):
            raise InvalidInputError("metadata must be an object")
        return dict(self._settings.json_limits.check(metadata, "metadata"))

    # -- use cases --------------------------------------------------------------------------------

    async def start(
        self,
        principal: Who,
        message: str,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        strategy: Any = None,
    ) -> ChatRun:
        """Start a run (or queue it: `strategy`) and return at once; its events go to the session's subscribers.

        The session's owner is read on every call, never taken from the caller: a session may have been
        deleted or expired since, and its id taken by another principal."""
        session, question, extra, how = await self._ask(principal, message, session_id, metadata, strategy)
        return await self._queue.start(
            session.session_id, question, extra, self._bounds.max_session_bytes, how, principal=session.user_id,
            end_user=session.end_user)

    async def _ask(
        self, principal: Who, message: str, session_id: str | None, metadata: Any, strategy: Any,
    ) -> tuple[Session, str, dict[str, Any], MultitaskStrategy]:
        """A new question checked (text, metadata, strategy), counted against the key's rate (RateLimitedError
        past it, before anything is stored), and its session, opened for the principal."""
        question = self.validate_message(message)
        extra = self.validate_metadata(metadata)
        how = MultitaskStrategy.parse(strategy)
        caller = Caller.of(principal)
        await self._limits.admit_question(who_of(caller.principal, caller.end_user), new_session=session_id is None)
        return await self.open_session(principal, session_id, question), question, extra, how

    async def stream(
        self, principal: Who, message: str, session_id: str | None = None, metadata: dict[str, Any] | None = None,
        strategy: Any = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """Start a run and yield its events until it ends (`done`) or awaits an approval (`hitl`)."""
        run, subscription = await self.start_watched(
            principal, message, session_id, metadata, SYNC_BUFFER_EVENTS, strategy)
        try:
            async for event in self._follow(subscription, run.run_id):
                yield event
        finally:
            subscription.close()

    async def start_watched(
        self, principal: Who, message: str, session_id: str | None, metadata: dict[str, Any] | None, maxsize: int,
        strategy: Any = None,
    ) -> tuple[ChatRun, Subscription]:
        """Start a run with a subscription taken just before it, so every event of the run reaches it (the
        caller closes it). Errors (validation, ownership, a run in progress...) come before anything streams."""
        session, question, extra, how = await self._ask(principal, message, session_id, metadata, strategy)
        sid = session.session_id
        subscription = await self._broker.subscribe(sid, await self._broker.last_seq(sid), maxsize)
        try:
            run = await self._queue.start(
                sid, question, extra, self._bounds.max_session_bytes, how, principal=session.user_id,
                end_user=session.end_user)
        except BaseException:
            subscription.close()
            raise
        return run, subscription

    async def chat(
        self, principal: Who, message: str, session_id: str | None = None, metadata: dict[str, Any] | None = None,
        strategy: Any = None,
    ) -> RunOutcome:
        """Start a run and wait until it ends or awaits an approval."""
        return await self._outcome(
            [e async for e in self.stream(principal, message, session_id, metadata, strategy)])

    async def cancel(
        self, principal: Who, session_id: str, run_id: str | None = None, wait: bool = True
    ) -> str:
        """Cancel the session's active run (and, with `wait`, see it end); NoActiveRunError if none."""
        await self._watch.owned(principal, session_id)
        return await self._runs.cancel(session_id, run_id, wait=wait)

    async def decide(self, principal: Who, session_id: str, interrupt_id: str | None, raw_decisions: Any) -> str:
        """Deliver a decision on a pending approval to its run; returns the run id."""
        run_id, _ = await self._decide(principal, session_id, interrupt_id, raw_decisions)
        return run_id

    async def decide_interrupt(
        self, principal: Who, session_id: str, interrupt_id: str | None, raw_decisions: Any
    ) -> tuple[str, str]:
        """Deliver a decision; the run id and the decided interrupt's id."""
        return await self._decide(principal, session_id, interrupt_id, raw_decisions)

    async def _decide(
        self, principal: Who, session_id: str, interrupt_id: str | None, raw_decisions: Any
    ) -> tuple[str, str]:
        session = await self._watch.owned(principal, session_id)
        decision = self._one_decision(raw_decisions, self._settings.json_limits)
        if interrupt_id is not None:
            interrupt_id = valid_text(interrupt_id)
        if interrupt_id is None:
            pending = session.pending_interrupt
            if not pending:
                raise InterruptNotFoundError("No approval is pending in this session")
            interrupt_id = str(pending["interrupt_id"])
        record = await self._repo.get_interrupt(session_id, interrupt_id)
        if record is None:
            raise InterruptNotFoundError()
        if record.decision is not None:
            raise DecisionConflictError(details={"decision": record.decision.as_dict()})
        if decision.type.value not in record.request.allowed_decisions:
            raise InvalidInputError(f"decision {decision.type.value!r} is not allowed here")
        run_id = record.request.run_id
        if await self._broker.active_run(session_id) != run_id:
            raise DecisionConflictError("The run that asked for this approval is no longer running")
        if not await self._repo.resolve_interrupt(session_id, interrupt_id, decision, self._clock.now()):
            raise DecisionConflictError()
        await self._broker.send_control(
            RunControl("decision", session_id, run_id, interrupt_id=interrupt_id, decision=decision)
        )
        return run_id, interrupt_id

    async def decide_stream(
        self, principal: Who, session_id: str, interrupt_id: str | None, raw_decisions: Any
    ) -> AsyncGenerator[RunEvent, None]:
        """Decide, then yield the continued run's events (from the decision's `hitl_resolved` on) until it ends
        or awaits another approval."""
        subscription = await self._broker.subscribe(
            session_id, await self._broker.last_seq(session_id), SYNC_BUFFER_EVENTS
        )
        try:
            run_id, decided = await self._decide(principal, session_id, interrupt_id, raw_decisions)
            # the subscription may begin before the `hitl` (when the run is on another process, this one may
            # not have seen it yet): what comes before the decision's `hitl_resolved` is not the continuation
            async for event in self._follow(subscription, run_id, after_interrupt=decided):
                yield event
        finally:
            subscription.close()

    async def decide_and_wait(
        self, principal: Who, session_id: str, interrupt_id: str | None, raw_decisions: Any
    ) -> RunOutcome:
        """Decide, then wait like `chat`; the outcome's events are those after the decision."""
        return await self._outcome(
            [e async for e in self.decide_stream(principal, session_id, interrupt_id, raw_decisions)]
        )

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _one_decision(raw_decisions: Any, limits: JsonLimits) -> Decision:
        if not isinstance(raw_decisions, list) or len(raw_decisions) != 1 or not isinstance(raw_decisions[0], dict):
            raise InvalidInputError("decisions must be a list of exactly one decision")
        return Decision.parse(limits.check(raw_decisions[0], "decision"))

    def follow(self, subscription: Subscription, run_id: str, after_interrupt: str | None = None
               ) -> AsyncGenerator[RunEvent, None]:
        """The run's events from the subscription up to its `done` or next `hitl` (see _follow)."""
        return self._follow(subscription, run_id, after_interrupt)

    @staticmethod
    async def _follow(
        subscription: Subscription, run_id: str, after_interrupt: str | None = None
    ) -> AsyncGenerator[RunEvent, None]:
        """The run's events from the subscription, up to its `done` or its next `hitl`; with `after_interrupt`,
        only from the `hitl_resolved` of that interrupt on."""
        waiting = after_interrupt is not None
        batch: list[Any] = list(subscription.replayed)
        while True:
            for item in batch:
                if not isinstance(item, RunEvent) or item.run_id != run_id:
                    continue
                if waiting:
                    if item.event_type != EventType.HITL_RESOLVED or item.data.get("interrupt_id") != after_interrupt:
                        continue
                    waiting = False
                yield item
                if item.event_type in _STOPS:
                    return
            batch = await subscription.get_batch()

    async def outcome(self, events: list[RunEvent]) -> RunOutcome:
        """What a waited-for run returns, from its events up to its `done` or `hitl`."""
        return await self._outcome(events)

    async def _outcome(self, events: list[RunEvent]) -> RunOutcome:
        last = events[-1]
        session_id, run_id = last.session_id, str(last.run_id)
        text = "".join(e.data["content"] for e in events if e.event_type == EventType.TEXT)
        if last.event_type == EventType.HITL:
            live = self._runs.live_content(run_id)
            return RunOutcome(session_id, run_id, "awaiting_approval", text if live is None else live, None, events)
        message_id = last.data.get("message_id")
        stored = await self._repo.get_message(session_id, message_id) if message_id else None
        content = stored.content if stored else text
        return RunOutcome(session_id, run_id, last.data["status"], content, message_id, events)
