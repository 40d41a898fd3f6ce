"""Human-in-the-loop for the runs of this process: ask, wait (with a timeout), resolve exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel

from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.approvals import (
    ApprovalAction,
    ApprovalRequest,
    Decision,
    DecisionSource,
    DecisionType,
    InterruptRecord,
)
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.models import ChatRun, RunStatus

Publish = Callable[[ChatRun, EventType, dict[str, Any]], RunEvent]


@dataclass(slots=True)
class PendingApproval:
    request: ApprovalRequest
    future: asyncio.Future[Decision]
    published: bool = False
    asked_at: float = 0.0  # when the request was published (monotonic)


@dataclass(slots=True)
class LiveRun:
    """A run of this process: its task, its cancel scope, the approval it waits for, and the seqs of its
    `run_started` and of its last text delta (for its checkpoint)."""

    run: ChatRun
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    task: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    pending: PendingApproval | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    started_seq: int = 0
    who: str | None = None  # whose run slot it holds (application/limits.py)
    started_at: float = field(default_factory=time.monotonic)
    cancelled_at: float | None = None  # when a cancel reached this process (monotonic)

    def deliver(self, interrupt_id: str | None, decision: Decision) -> None:
        """Hand a decision to the waiting approval, if it is the one decided."""
        pending = self.pending
        if pending and pending.request.interrupt_id == interrupt_id and not pending.future.done():
            pending.future.set_result(decision)


class Approvals:
    def __init__(
        self, repository: SessionRepository, clock: Clock, ids: IdGenerator, publish: Publish, timeout_s: float,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._repo = repository
        self._telemetry = telemetry
        self._clock = clock
        self._ids = ids
        self._publish = publish
        self._timeout_s = timeout_s

    async def request(self, live: LiveRun, action: ApprovalAction) -> Decision:
        """Store and announce the request, wait for a decision (none in time: reject), announce it."""
        run = live.run
        request = ApprovalRequest(
            self._ids.new_id("int"), run.session_id, run.run_id, action,
            self._clock.now() + timedelta(seconds=self._timeout_s),
        )
        pending = PendingApproval(request, asyncio.get_running_loop().create_future())
        live.pending = pending
        with anyio.CancelScope(shield=True):
            await self._repo.save_interrupt(InterruptRecord(request))
            await self._repo.set_run_state(run.session_id, active_run_id=run.run_id,
                                           pending_interrupt=request.event_data())
        await anyio.lowlevel.checkpoint()  # a cancel that came during the write ends the run here
        run.transition(RunStatus.AWAITING_APPROVAL)
        self._publish(run, EventType.HITL, request.event_data())
        pending.published, pending.asked_at = True, time.monotonic()
        decision: Decision | None = None
        with anyio.move_on_after(self._timeout_s):
            decision = await pending.future
        if decision is None:
            timeout = Decision(DecisionType.REJECT, message="No decision before the timeout",
                               source=DecisionSource.TIMEOUT)
            decision = await self._resolve_as(request, timeout)
        self._telemetry.approval_waited(time.monotonic() - pending.asked_at, _outcome(decision))
        live.pending = None
        with anyio.CancelScope(shield=True):
            await self._repo.set_run_state(run.session_id, active_run_id=run.run_id, pending_interrupt=None)
        run.transition(RunStatus.RUNNING)
        self._publish_resolved(run, request, decision)
        return decision

    async def close_pending(self, live: LiveRun) -> None:
        """The run ends while it waits: resolve the request as a reject (source cancel, or timeout if failed)."""
        pending = live.pending
        if pending is None:
            return
        live.pending = None
        source = DecisionSource.CANCEL if live.cancel_reason else DecisionSource.TIMEOUT
        reason = f"Run ended ({live.cancel_reason or 'failed'}) before a decision"
        decision = await self._resolve_as(pending.request, Decision(DecisionType.REJECT, None, reason, source))
        if pending.published:
            self._publish_resolved(live.run, pending.request, decision)
            self._telemetry.approval_waited(time.monotonic() - pending.asked_at, _outcome(decision))

    async def _resolve_as(self, request: ApprovalRequest, decision: Decision) -> Decision:
        """Record `decision` unless another won the race; return the decision that stands."""
        with anyio.CancelScope(shield=True):
            won = await self._repo.resolve_interrupt(
                request.session_id, request.interrupt_id, decision, self._clock.now()
            )
            if won:
                return decision
            record = await self._repo.get_interrupt(request.session_id, request.interrupt_id)
        return record.decision if record and record.decision else decision

    def _publish_resolved(self, run: ChatRun, request: ApprovalRequest, decision: Decision) -> None:
        self._publish(run, EventType.HITL_RESOLVED, {
            "interrupt_id": request.interrupt_id, "decision": decision.as_dict(),
        })


def _outcome(decision: Decision) -> str:
    """The approval_wait label: approve, edit, reject, or how a decision nobody made came (timeout, cancel)."""
    if decision.source in (DecisionSource.TIMEOUT, DecisionSource.CANCEL):
        return decision.source.value
    return decision.type.value
