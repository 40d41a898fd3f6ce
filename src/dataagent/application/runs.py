"""RunManager: owns the runs of this process as tasks, their cancellation, approvals and events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel

from dataagent.application import logcontext
from dataagent.application.approvals import Approvals, LiveRun
from dataagent.application.hub import EventHub
from dataagent.application.leases import LeaseKeeper
from dataagent.application.limits import Limits, who_of
from dataagent.application.ports import AgentEngine, Clock, IdGenerator, RunContext, SessionRepository
from dataagent.application.run_end import RunEnd
from dataagent.application.run_outputs import RunOutputs
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.application.transport import RunControl
from dataagent.application.verified import ExampleFinder
from dataagent.domain.errors import (
    AgentFailedError,
    BrokerUnavailableError,
    DataAgentError,
    NoActiveRunError,
    RunInProgressError,
)
from dataagent.domain.events import EventType, RunEvent, TextDelta
from dataagent.domain.models import ChatRun, Message, MessagePageQuery, Role, RunState, RunStatus

log = logging.getLogger("dataagent.runs")

CANCEL_WAIT_S = 5.0
REMOTE_END_POLL_S = 0.02
FINAL_WRITE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RunSettings:
    hitl_timeout_s: float = 300.0
    history_limit: int = 50


class RunManager:
    """Starts runs as tasks it owns; cancels them at the engine's next await; ends each exactly once."""

    def __init__(
        self,
        repository: SessionRepository,
        broker: EventHub,
        engine: AgentEngine,
        clock: Clock,
        ids: IdGenerator,
        settings: RunSettings | None = None,
        limits: Limits | None = None,
        examples: ExampleFinder | None = None,
        telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING,
    ) -> None:
        self._repo = repository
        self._telemetry, self._tracing = telemetry, tracing
        self._broker = broker
        self._engine = engine
        self._clock = clock
        self._ids = ids
        self._settings = settings or RunSettings()
        self._examples = examples
        self._runs: dict[str, LiveRun] = {}
        self._approvals = Approvals(repository, clock, ids, self._publish, self._settings.hitl_timeout_s, telemetry)
        self._limits = limits = limits or Limits()
        self._end = RunEnd(repository, broker, clock, ids, self._approvals, self._publish, self._runs, limits,
                           telemetry)
        self._leases = LeaseKeeper(broker, self._runs, limits)
        self._outputs = RunOutputs(repository, clock, ids, self._publish)
        self._closing = False
        self._after_run: Callable[[str], None] | None = None

    def after_run(self, callback: Callable[[str], None]) -> None:
        """Call `callback(session_id)` each time a run of this process has ended (the queue starts the next)."""
        self._after_run = callback

    def attach(self) -> None:
        """Receive the broker's control for the runs of this process (cancels, approval decisions): once, at
        start-up."""
        self._broker.on_control(self._on_control)

    @property
    def active_runs(self) -> int:
        return len(self._runs)

    def live_content(self, run_id: str) -> str | None:
        """The text a run of this process has produced so far, or None if it is not running here."""
        live = self._runs.get(run_id)
        return live.run.content if live else None

    async def start_run(
        self, sid: str, question: str, metadata: dict[str, Any], max_session_bytes: int | None = None, *,
        run_id: str | None = None, admit: Callable[[], Awaitable[bool]] | None = None, principal: str | None = None,
        end_user: str | None = None,
    ) -> ChatRun:
        """Claim the (existing) session, persist the question and start the engine; RunInProgressError if busy,
        SessionFullError if the question would take the session's stored bytes past `max_session_bytes`.
        A queued question brings its `run_id`, and `admit`, which takes it from the queue once the session is
        claimed (False: another process took it; RunInProgressError). The run holds one of the principal's run
        slots until it ends (RateLimitedError if it has none free, checked once the session is claimed)."""
        run_id = run_id or self._ids.new_id("run")
        examples = tuple(await self._examples.similar(question, principal)) if self._examples else ()
        if self._closing or not await self._broker.claim_run(sid, run_id):
            raise RunInProgressError()
        now = self._clock.now()
        run = ChatRun(run_id, sid, question, now)
        who = who_of(principal, end_user) if principal is not None else None
        try:
            await self._limits.take_slot(who, run_id)
            if admit is not None and not await admit():
                raise RunInProgressError()
            with anyio.CancelScope(shield=True):
                user_message = await self._repo.append_message(
                    Message(self._ids.new_id("msg"), sid, Role.USER, question, now, run_id, "completed",
                            dict(metadata)),
                    RunState(active_run_id=run_id), max_session_bytes,
                )
        except BaseException:
            await self._broker.release_run(sid, run_id)
            await self._limits.free_slot(who, run_id)
            raise
        run.user_message_id = user_message.message_id
        run.transition(RunStatus.RUNNING)
        live = LiveRun(run, who=who)
        self._runs[run_id] = live
        self._telemetry.run_started()
        started: dict[str, Any] = {"run_id": run_id, "message_id": user_message.message_id}
        if examples:
            started["verified_queries"] = [q.query_id for q in examples]
        live.started_seq = self._publish(run, EventType.RUN_STARTED, started).seq
        ctx = RunContext(
            sid, run_id, question, dict(metadata),
            request_approval=partial(self._approvals.request, live),
            load_history=partial(self._load_history, sid, run.user_message_id), principal=principal,
            examples=examples,
            end_user=end_user,
        )
        logcontext.bind(session_id=sid)
        live.task = asyncio.create_task(self._drive(live, ctx), name=f"run:{run_id}")  # the caller's trace context

        self._leases.ensure()
        return run

    async def cancel(
        self, session_id: str, run_id: str | None = None, reason: str = "user", wait: bool = True
    ) -> str:
        """Cancel the session's active run (if `run_id` is given, only that one); `wait` for its end, wherever
        it runs (its answer is then stored and the session free, as on one process)."""
        try:
            active = await self._broker.active_run(session_id)
        except BrokerUnavailableError:
            live = self._local_run_of(session_id)  # the broker is away: a run of this process still stops
            if live is None:
                raise
            active = live.run.run_id
        if active is None or (run_id is not None and run_id != active):
            raise NoActiveRunError()
        live = self._runs.get(active)
        if live is not None:
            self._cancel_local(live, reason)
        else:
            await self._broker.send_control(RunControl("cancel", session_id, active, reason))
        if wait:
            with anyio.move_on_after(CANCEL_WAIT_S):
                if live is not None:
                    await live.finished.wait()
                else:
                    await self._wait_remote_end(session_id, active)
        return active

    async def _wait_remote_end(self, session_id: str, run_id: str) -> None:
        """Until the session's claim by `run_id` (a run of another process) is released."""
        while True:
            if await self._broker.active_run(session_id) != run_id:
                return
            await asyncio.sleep(REMOTE_END_POLL_S)

    def _local_run_of(self, session_id: str) -> LiveRun | None:
        return next((live for live in self._runs.values() if live.run.session_id == session_id), None)

    async def wait_finished(self, run_id: str) -> None:
        live = self._runs.get(run_id)
        if live is not None:
            await live.finished.wait()

    async def shutdown(self, reason: str = "shutdown", timeout_s: float = 10.0) -> None:
        """Refuse new runs, cancel every run of this process and wait until each is persisted."""
        self._closing = True
        lives = list(self._runs.values())
        for live in lives:
            self._cancel_local(live, reason)
        with anyio.move_on_after(timeout_s):
            for live in lives:
                await live.finished.wait()
        await self._leases.stop()

    # -- control from the broker (this process owns the run) ------------------------------------

    async def _on_control(self, control: RunControl) -> None:
        live = self._runs.get(control.run_id)
        if live is None:
            return
        if control.kind == "cancel":
            self._cancel_local(live, control.reason)
        elif control.kind == "decision" and control.decision is not None:
            live.deliver(control.interrupt_id, control.decision)

    def _cancel_local(self, live: LiveRun, reason: str) -> None:
        if live.cancel_reason is not None or live.run.status.is_terminal:
            return
        live.cancel_reason, live.cancelled_at = reason, time.monotonic()
        live.scope.cancel()

    # -- the run task -------------------------------------------------------------------------

    async def _drive(self, live: LiveRun, ctx: RunContext) -> None:
        run = live.run
        sid, run_id = run.session_id, run.run_id
        logcontext.bind(session_id=sid, run_id=run_id)  # the principal: the caller's, inherited
        # the run's span is opened here, not by a coroutine around this one: that would be one more frame to
        # pass through at every step of the run (a nullcontext when nothing traces)
        with self._tracing.span("dataagent.run", {"session_id": sid, "run_id": run_id}):
            error: DataAgentError | None = None
            agen = self._engine.stream(ctx)
            publish, keep_text = self._broker.publish, run.text.append
            first = True  # the time to the first token is reported once, on a local flag (no call per token)
            with live.scope:
                try:
                    async for output in agen:
                        if live.cancel_reason is not None:
                            break
                        if type(output) is TextDelta:  # the hot path: no await, no dispatch
                            content = output.content
                            if content:
                                if first:
                                    first = False
                                    self._telemetry.first_token(time.monotonic() - live.started_at)
                                keep_text(content)
                                delta = {"content": content, "is_final": False}  # text_delta(), inlined
                                publish(sid, run_id, "text", delta)
                        else:
                            await self._outputs.apply(live, output)
                except DataAgentError as exc:
                    error = exc
                except Exception as exc:
                    log.exception("run %s: engine failed", live.run.run_id)
                    error = AgentFailedError(f"The agent failed ({type(exc).__name__})")
            with anyio.move_on_after(FINAL_WRITE_TIMEOUT_S, shield=True):
                with contextlib.suppress(Exception):
                    await agen.aclose()
                await self._end.finish(live, error)
        if self._after_run is not None:
            self._after_run(sid)

    async def _load_history(self, session_id: str, before_message_id: str | None, limit: int) -> list[Message]:
        page = await self._repo.list_messages(
            session_id, MessagePageQuery(limit=max(1, limit), before=before_message_id)
        )
        return page.messages

    def _publish(self, run: ChatRun, event_type: EventType, data: dict[str, Any]) -> RunEvent:
        return self._broker.publish(run.session_id, run.run_id, event_type.value, data)
