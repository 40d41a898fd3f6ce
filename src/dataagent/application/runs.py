"""RunManager: owns the runs of this process as tasks, their cancellation, approvals and events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel

from dataagent.application.approvals import Approvals, LiveRun
from dataagent.application.charts import tool_data
from dataagent.application.failover import WORKER_LOST, OrphanCloser, keep_leases
from dataagent.application.ports import (
    AgentEngine,
    Clock,
    IdGenerator,
    RunBroker,
    RunContext,
    RunControl,
    SessionRepository,
)
from dataagent.domain.errors import (
    AgentFailedError,
    BrokerUnavailableError,
    DataAgentError,
    NoActiveRunError,
    RunInProgressError,
    StoreUnavailableError,
    WorkerLostError,
)
from dataagent.domain.events import (
    AgentOutput,
    EventType,
    TextDelta,
    ToolCallRequested,
    ToolCompleted,
    UsageReported,
)
from dataagent.domain.models import ChatRun, Message, MessagePageQuery, Role, RunState, RunStatus

log = logging.getLogger("dataagent.runs")

CANCEL_WAIT_S = 5.0
REMOTE_END_POLL_S = 0.02
FINAL_WRITE_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class RunSettings:
    hitl_timeout_s: float = 300.0
    history_limit: int = 50


def _checkpoint(run: ChatRun) -> dict[str, Any]:
    """What another process needs to close the run if this one dies: its text so far and tool calls."""
    return {
        "text": run.content, "tool_calls": run.tool_calls,
        "token_usage": run.token_usage.as_dict() if run.token_usage else None,
    }


class RunManager:
    """Starts runs as tasks it owns; cancels them at the engine's next await; ends each exactly once."""

    def __init__(
        self,
        repository: SessionRepository,
        broker: RunBroker,
        engine: AgentEngine,
        clock: Clock,
        ids: IdGenerator,
        settings: RunSettings | None = None,
    ) -> None:
        self._repo = repository
        self._broker = broker
        self._engine = engine
        self._clock = clock
        self._ids = ids
        self._settings = settings or RunSettings()
        self._runs: dict[str, LiveRun] = {}
        self._approvals = Approvals(repository, clock, ids, self._publish, self._settings.hitl_timeout_s)
        self._closing = False
        self._keeper: asyncio.Task[None] | None = None
        broker.on_control(self._on_control)
        broker.on_orphan(OrphanCloser(repository, broker, clock, ids).close)

    @property
    def active_runs(self) -> int:
        return len(self._runs)

    def live_content(self, run_id: str) -> str | None:
        """The text a run of this process has produced so far, or None if it is not running here."""
        live = self._runs.get(run_id)
        return live.run.content if live else None

    async def start_run(
        self, sid: str, question: str, metadata: dict[str, Any], max_session_bytes: int | None = None,
        principal: str | None = None,
    ) -> ChatRun:
        """Claim the (existing) session, persist the question and start the engine; RunInProgressError if busy,
        SessionFullError if the question would take the session's stored bytes past `max_session_bytes`."""
        run_id = self._ids.new_id("run")
        if self._closing or not await self._broker.claim_run(sid, run_id):
            raise RunInProgressError()
        now = self._clock.now()
        run = ChatRun(run_id, sid, question, now)
        try:
            with anyio.CancelScope(shield=True):
                user_message = await self._repo.append_message(
                    Message(self._ids.new_id("msg"), sid, Role.USER, question, now, run_id, "completed",
                            dict(metadata)),
                    RunState(active_run_id=run_id), max_session_bytes,
                )
        except BaseException:
            await self._broker.release_run(sid, run_id)
            raise
        run.user_message_id = user_message.message_id
        run.transition(RunStatus.RUNNING)
        live = LiveRun(run)
        self._runs[run_id] = live
        self._publish(run, EventType.RUN_STARTED, {"run_id": run_id, "message_id": user_message.message_id})
        ctx = RunContext(
            sid, run_id, question, dict(metadata),
            request_approval=partial(self._approvals.request, live),
            load_history=partial(self._load_history, sid, run.user_message_id), principal=principal,
        )
        live.task = asyncio.create_task(self._drive(live, ctx), name=f"run:{run_id}")
        self._ensure_keeper()
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
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    def checkpoints(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(session_id, run_id) -> what another process needs to close the run if this one dies."""
        return {(live.run.session_id, run_id): _checkpoint(live.run) for run_id, live in self._runs.items()}

    def _ensure_keeper(self) -> None:
        interval = self._broker.lease_renew_interval_s
        if interval is not None and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(keep_leases(self, self._broker, interval), name="run-leases")

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
        live.cancel_reason = reason
        live.scope.cancel()

    # -- the run task -------------------------------------------------------------------------

    async def _drive(self, live: LiveRun, ctx: RunContext) -> None:
        error: DataAgentError | None = None
        agen = self._engine.stream(ctx)
        run = live.run
        publish, keep_text, sid, run_id = self._broker.publish, run.text.append, run.session_id, run.run_id
        with live.scope:
            try:
                async for output in agen:
                    if live.cancel_reason is not None:
                        break
                    if type(output) is TextDelta:  # the hot path: no await, no dispatch
                        content = output.content
                        if content:
                            keep_text(content)
                            publish(sid, run_id, "text", {"content": content, "is_final": False})
                    else:
                        await self._apply(live, output)
            except DataAgentError as exc:
                error = exc
            except Exception as exc:
                log.exception("run %s: engine failed", live.run.run_id)
                error = AgentFailedError(f"The agent failed ({type(exc).__name__})")
        with anyio.move_on_after(FINAL_WRITE_TIMEOUT_S, shield=True):
            with contextlib.suppress(Exception):
                await agen.aclose()
            await self._finish(live, error)

    async def _apply(self, live: LiveRun, output: AgentOutput) -> None:
        run = live.run
        if isinstance(output, TextDelta):
            if output.content:
                run.text.append(output.content)
                self._publish(run, EventType.TEXT, {"content": output.content, "is_final": False})
        elif isinstance(output, ToolCallRequested):
            run.tool_calls.append(
                {"tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "tool_args": output.tool_args}
            )
            self._publish(run, EventType.TOOL_CALL, {
                "tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "tool_args": output.tool_args,
            })
        elif isinstance(output, ToolCompleted):
            await self._record_tool_result(live, output)
        elif isinstance(output, UsageReported):
            run.add_usage(output.usage)

    async def _record_tool_result(self, live: LiveRun, output: ToolCompleted) -> None:
        run = live.run
        extra = tool_data(output)  # table and chart, as the event's `data` and the stored message's metadata
        meta: dict[str, Any] = {
            "tool_call_id": output.tool_call_id, "tool_name": output.tool_name, "status": output.status, **extra,
        }
        with anyio.CancelScope(shield=True):
            await self._repo.append_message(Message(
                self._ids.new_id("msg"), run.session_id, Role.TOOL, output.result, self._clock.now(),
                run.run_id, output.status, meta,
            ))
        if live.cancel_reason is not None:
            return
        data: dict[str, Any] = {
            "tool_call_id": output.tool_call_id, "tool_name": output.tool_name,
            "result": output.result, "status": output.status,
        }
        if extra:
            data["data"] = extra
        self._publish(run, EventType.TOOL_RESULT, data)

    async def _load_history(self, session_id: str, before_message_id: str | None, limit: int) -> list[Message]:
        page = await self._repo.list_messages(
            session_id, MessagePageQuery(limit=max(1, limit), before=before_message_id)
        )
        return page.messages

    # -- the end of a run -----------------------------------------------------------------------

    async def _finish(self, live: LiveRun, error: DataAgentError | None) -> None:
        """End the run exactly once: whatever its final writes raise, the session is freed and `done` published."""
        message_id, status = None, RunStatus.FAILED
        try:
            message_id, status = await self._close(live, error)
        except Exception:  # not a store outage (those are handled below): a bug; the run still ends
            log.exception("run %s: ending it failed", live.run.run_id)
            self._publish_error(live.run, DataAgentError("The answer could not be stored"))
            with contextlib.suppress(DataAgentError):
                live.run.transition(status)
        finally:
            await self._release(live, message_id, status)

    async def _close(self, live: LiveRun, error: DataAgentError | None) -> tuple[str | None, RunStatus]:
        run = live.run
        if live.pending is not None:
            await self._approvals.close_pending(live)
        status = self._final_status(live, error)
        if status is RunStatus.COMPLETED:
            self._publish(run, EventType.TEXT, {"content": "", "is_final": True})
        if error is not None:
            self._publish_error(run, error)
        if await self._closed_elsewhere(run):
            # this process was cut off from the broker longer than its lease: another one closed the run as
            # worker_lost and stored its answer; storing this one too would persist the run twice
            log.error("run %s: closed by another process meanwhile; its answer is not stored again", run.run_id)
            run.reason = WORKER_LOST
            self._publish_error(run, WorkerLostError())
            message_id, status = None, RunStatus.FAILED
        else:
            message_id, status = await self._persist_answer(live, status, error)  # also frees the session
        run.transition(status)
        return message_id, status

    async def _release(self, live: LiveRun, message_id: str | None, status: RunStatus) -> None:
        run = live.run
        done: dict[str, Any] = {
            "run_id": run.run_id, "status": status.value, "cancelled": status is RunStatus.CANCELLED,
            "message_id": message_id,
            "token_usage": run.token_usage.as_dict() if run.token_usage else None,
        }
        if run.reason:
            done["reason"] = run.reason
        self._runs.pop(run.run_id, None)
        try:  # the broker publishes `done` once the session is free (also if the release itself fails)
            await self._broker.release_run(run.session_id, run.run_id, (EventType.DONE.value, done))
        except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the run has ended here
            log.warning("run %s: could not release its claim; its lease will lapse", run.run_id,
                        exc_info=not isinstance(exc, DataAgentError))
        finally:
            live.finished.set()

    async def _closed_elsewhere(self, run: ChatRun) -> bool:
        """With several processes (leases), whether the session no longer names this run as its active one."""
        if self._broker.lease_renew_interval_s is None:
            return False
        try:
            session = await self._repo.get_session(run.session_id)
        except Exception:  # noqa: BLE001 - the store is away: the final write below reports it
            return False
        return session is not None and session.active_run_id != run.run_id

    def _final_status(self, live: LiveRun, error: DataAgentError | None) -> RunStatus:
        if live.cancel_reason is not None:
            live.run.reason = live.cancel_reason
            return RunStatus.CANCELLED
        if error is not None:
            live.run.error = error.message
            live.run.reason = error.code
            return RunStatus.FAILED
        return RunStatus.COMPLETED

    async def _persist_answer(
        self, live: LiveRun, status: RunStatus, error: DataAgentError | None
    ) -> tuple[str | None, RunStatus]:
        run = live.run
        meta: dict[str, Any] = {
            "tool_calls": run.tool_calls,
            "token_usage": run.token_usage.as_dict() if run.token_usage else None,
        }
        if run.reason:
            meta["reason"] = run.reason
        if error is not None:
            meta["error"] = {"error_code": error.code, "message": error.message}
        now = self._clock.now()
        try:  # the answer and the freed session in one write
            message = await self._repo.append_message(
                Message(self._ids.new_id("msg"), run.session_id, Role.ASSISTANT, run.content, now, run.run_id,
                        status.value, meta),
                RunState(active_run_id=None),
            )
        except Exception as exc:  # any failure of the store: the run ends all the same
            failure = exc if isinstance(exc, DataAgentError) else StoreUnavailableError(
                f"The answer could not be stored ({type(exc).__name__})")
            log.error("run %s: the answer could not be persisted: %s", run.run_id, failure.code,
                      exc_info=failure is not exc)
            self._publish_error(run, failure)
            run.reason = run.reason or failure.code
            with contextlib.suppress(Exception):  # free the session at least, if the store allows it
                await self._repo.set_run_state(run.session_id, active_run_id=None, pending_interrupt=None,
                                               touched_at=now)
            return None, RunStatus.CANCELLED if status is RunStatus.CANCELLED else RunStatus.FAILED
        return message.message_id, status

    def _publish_error(self, run: ChatRun, error: DataAgentError) -> None:
        self._publish(run, EventType.ERROR, {
            "error_code": error.code, "message": error.message, "recoverable": False,
        })

    def _publish(self, run: ChatRun, event_type: EventType, data: dict[str, Any]) -> None:
        self._broker.publish(run.session_id, run.run_id, event_type.value, data)
