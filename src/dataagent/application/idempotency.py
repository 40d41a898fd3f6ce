"""Idempotent requests: a retry with the same key gets the first request's outcome, never a second run.

The first request with a key claims it in the session store (an insert: of concurrent ones exactly one wins, on
any worker), starts its run and records {session_id, run_id, ...}. A retry, or a request racing the first, waits
for that record and joins the same run: its events while it runs, its stored answer once it has ended. A key
whose first request failed is released: the retry runs anew. Keys expire after `ttl_s` (24 h).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import anyio

from dataagent.application.chat import SYNC_BUFFER_EVENTS, ChatService, RunOutcome
from dataagent.application.hub import EventHub
from dataagent.application.ports import Clock, SessionRepository
from dataagent.application.streams import Subscription
from dataagent.domain.callers import Caller, Who
from dataagent.domain.errors import IdempotencyKeyReusedError, StoreUnavailableError
from dataagent.domain.events import EventType, RunEvent, done_payload
from dataagent.domain.models import ChatRun, MessagePageQuery, Role
from dataagent.domain.requests import RequestRecord, fingerprint, validate_key

KEY_TTL_S = 24 * 3600.0
WAIT_POLL_S = 0.02
WAIT_FIRST_S = 30.0  # how long a racing request waits for the first one's outcome
_LAST_MESSAGES = 200

Outcome = dict[str, Any]


class IdempotentChat:
    """ChatService's use cases with an optional idempotency key (None: exactly as ChatService)."""

    def __init__(
        self, chat: ChatService, repository: SessionRepository, broker: EventHub, clock: Clock,
        ttl_s: float = KEY_TTL_S,
    ) -> None:
        self._chat = chat
        self._repo = repository
        self._broker = broker
        self._clock = clock
        self._ttl = timedelta(seconds=ttl_s)

    async def start(
        self, principal: Who, key: str | None, message: Any, session_id: str | None, metadata: Any,
        strategy: Any = None, route: str = "chat",
    ) -> ChatRun:
        """ChatService.start; a retry returns the first request's run."""
        async def act() -> Outcome:
            run = await self._chat.start(principal, message, session_id, metadata, strategy)
            return {"session_id": run.session_id, "run_id": run.run_id}

        done, _ = await self._once(principal, key, (route, message, session_id, metadata, strategy), act)
        return ChatRun(done["run_id"], done["session_id"], "", self._clock.now())

    async def start_watched(
        self, principal: Who, key: str | None, message: Any, session_id: str | None, metadata: Any, maxsize: int,
        strategy: Any = None,
    ) -> tuple[ChatRun, Subscription]:
        """ChatService.start_watched; a retry gets a subscription with every event still held of the session
        (the caller follows the run's own)."""
        run, subscription, _ = await self._watched(principal, key, message, session_id, metadata, maxsize, strategy)
        return run, subscription

    async def _watched(
        self, principal: Who, key: str | None, message: Any, session_id: str | None, metadata: Any, maxsize: int,
        strategy: Any,
    ) -> tuple[ChatRun, Subscription, bool]:
        held: list[Subscription] = []

        async def act() -> Outcome:
            run, subscription = await self._chat.start_watched(
                principal, message, session_id, metadata, maxsize, strategy)
            held.append(subscription)
            return {"session_id": run.session_id, "run_id": run.run_id}

        done, _ = await self._once(principal, key, ("chat", message, session_id, metadata, strategy), act)
        run = ChatRun(done["run_id"], done["session_id"], "", self._clock.now())
        if held:
            return run, held[0], True
        subscription = await self._broker.subscribe(run.session_id, None, maxsize)  # from the active run's start
        ended = await self._stored_end(run.session_id, run.run_id)
        if ended is not None:  # it ended before: its `done` again, naming the stored answer
            seq = await self._broker.last_seq(run.session_id)
            subscription.put(RunEvent(EventType.DONE.value, done_payload(
                run.run_id, ended.status, ended.message_id, None), run.session_id, run.run_id, seq,
                self._clock.now()))
        return run, subscription, False

    async def chat(
        self, principal: Who, key: str | None, message: Any, session_id: str | None, metadata: Any,
        strategy: Any = None,
    ) -> RunOutcome:
        """ChatService.chat; a retry waits for the same run (or returns its stored end)."""
        run, subscription, fresh = await self._watched(
            principal, key, message, session_id, metadata, SYNC_BUFFER_EVENTS, strategy)
        return await self._wait(subscription, run.session_id, run.run_id, joined=not fresh)

    async def decide_and_wait(
        self, principal: Who, key: str | None, session_id: str, interrupt_id: str | None, decisions: Any
    ) -> RunOutcome:
        """ChatService.decide_and_wait; a retry waits for the same continued run."""
        if key is None:
            return await self._chat.decide_and_wait(principal, session_id, interrupt_id, decisions)
        subscription = await self._broker.subscribe(session_id, await self._broker.last_seq(session_id),
                                                    SYNC_BUFFER_EVENTS)

        async def act() -> Outcome:
            run_id, decided = await self._chat.decide_interrupt(principal, session_id, interrupt_id, decisions)
            return {"session_id": session_id, "run_id": run_id, "interrupt_id": decided}

        try:
            done, fresh = await self._once(principal, key, ("hitl", session_id, interrupt_id, decisions), act)
        except BaseException:
            subscription.close()
            raise
        if not fresh:
            subscription.close()
            subscription = await self._broker.subscribe(session_id, None, SYNC_BUFFER_EVENTS)
        return await self._wait(subscription, session_id, done["run_id"], done["interrupt_id"], joined=not fresh)

    async def cancel(self, principal: Who, key: str | None, session_id: str, run_id: str | None) -> str:
        """ChatService.cancel; a retry answers with the run the first one cancelled."""
        async def act() -> Outcome:
            return {"session_id": session_id, "run_id": await self._chat.cancel(principal, session_id, run_id)}

        done, _ = await self._once(principal, key, ("cancel", session_id, run_id), act)
        return str(done["run_id"])

    # -- the key ----------------------------------------------------------------------------------

    async def _once(
        self, principal: Who, key: str | None, request: Any, act: Callable[[], Awaitable[Outcome]]
    ) -> tuple[Outcome, bool]:
        """The outcome of `act`, run by the first request with the key; True if this request ran it. A key
        belongs to the caller: the principal, or one end user of it (another end user's equal key is unrelated)."""
        if key is None:
            return await act(), True
        key = validate_key(key)
        owner = Caller.of(principal).subject
        digest = fingerprint(request)
        with anyio.fail_after(WAIT_FIRST_S):
            while True:
                now = self._clock.now()
                held = await self._repo.claim_request(RequestRecord(owner, key, digest, now, now + self._ttl))
                if held is None:
                    return await self._first(owner, key, act), True
                while True:
                    if held.fingerprint != digest:
                        raise IdempotencyKeyReusedError()
                    if held.outcome is not None:
                        return held.outcome, False
                    await asyncio.sleep(WAIT_POLL_S)  # the first request is still starting its run
                    again = await self._repo.get_request(owner, key, self._clock.now())
                    if again is None:
                        break  # the first request failed and let the key go: claim it again
                    held = again

    async def _first(self, owner: str, key: str, act: Callable[[], Awaitable[Outcome]]) -> Outcome:
        try:
            outcome = await act()
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self._repo.release_request(owner, key)
                except StoreUnavailableError:
                    pass  # it expires
            raise
        with anyio.CancelScope(shield=True):
            await self._repo.settle_request(owner, key, outcome)
        return outcome

    # -- joining a run ----------------------------------------------------------------------------

    async def _wait(
        self, subscription: Subscription, session_id: str, run_id: str, after_interrupt: str | None = None,
        joined: bool = False,
    ) -> RunOutcome:
        """The run's outcome: from the subscription while it runs (or is queued); a joined run that ended and
        whose events are no longer held, from the store."""
        try:
            if joined:
                ended = await self._stored_end(session_id, run_id)
                if ended is not None:
                    return ended
            events: list[RunEvent] = [e async for e in self._chat.follow(subscription, run_id, after_interrupt)]
        finally:
            subscription.close()
        return await self._chat.outcome(events)

    async def _stored_end(self, session_id: str, run_id: str) -> RunOutcome | None:
        """The run's stored answer if it has ended (not while it runs or waits in the queue)."""
        if await self._broker.active_run(session_id) == run_id:
            return None
        first = await self._repo.list_messages(session_id, MessagePageQuery(limit=1))
        page = await self._repo.list_messages(
            session_id, MessagePageQuery(limit=_LAST_MESSAGES, offset=max(0, first.total - _LAST_MESSAGES)))
        answer = next((m for m in reversed(page.messages) if m.run_id == run_id and m.role is Role.ASSISTANT), None)
        if answer is None:
            return None
        return RunOutcome(session_id, run_id, answer.status, answer.content, answer.message_id)
