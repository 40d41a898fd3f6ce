"""The end of a run of this process: its answer stored once, its claim always released, exactly one `done`."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from dataagent.application.approvals import Approvals, LiveRun, Publish
from dataagent.application.hub import EventHub
from dataagent.application.limits import Limits
from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.errors import DataAgentError, StoreUnavailableError, WorkerLostError
from dataagent.domain.events import EventType, done_payload, text_end
from dataagent.domain.models import ChatRun, Message, Role, RunState, RunStatus

log = logging.getLogger("dataagent.runs")


def error_data(error: DataAgentError) -> dict[str, Any]:
    """The data of the `error` event that ends a run."""
    return {"error_code": error.code, "message": error.message, "recoverable": False}


class RunEnd:
    """Ends the runs of a RunManager: `finish` stores the answer (once, even if another process closed the run
    meanwhile), frees the session and publishes `done`, whatever its final writes raise."""

    def __init__(
        self,
        repository: SessionRepository,
        broker: EventHub,
        clock: Clock,
        ids: IdGenerator,
        approvals: Approvals,
        publish: Publish,
        runs: dict[str, LiveRun],
        limits: Limits | None = None,
        telemetry: Telemetry = NO_TELEMETRY,
    ) -> None:
        self._telemetry = telemetry
        self._repo = repository
        self._broker = broker
        self._clock = clock
        self._ids = ids
        self._approvals = approvals
        self._publish = publish
        self._runs = runs  # the manager's live runs: a run leaves them as it is released
        self._limits = limits or Limits()

    async def finish(self, live: LiveRun, error: DataAgentError | None) -> None:
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
            self._publish(run, EventType.TEXT, text_end())
        if error is not None:
            self._publish_error(run, error)
        if await self._closed_elsewhere(run):
            # this process was cut off from the broker longer than its lease: another one closed the run as
            # worker_lost and stored its answer; storing this one too would persist the run twice
            log.error("run %s: closed by another process meanwhile; its answer is not stored again", run.run_id)
            run.reason = WorkerLostError.code
            self._publish_error(run, WorkerLostError())
            message_id, status = None, RunStatus.FAILED
        else:
            message_id, status = await self._persist_answer(live, status, error)  # also frees the session
        run.transition(status)
        return message_id, status

    async def _release(self, live: LiveRun, message_id: str | None, status: RunStatus) -> None:
        run = live.run
        token_usage = run.token_usage.as_dict() if run.token_usage else None
        done = done_payload(run.run_id, status.value, message_id, token_usage, run.reason)
        self._runs.pop(run.run_id, None)
        await self._limits.free_slot(live.who, run.run_id)  # before `done`: its client may ask again at once
        try:  # the broker publishes `done` once the session is free (also if the release itself fails)
            await self._broker.release_run(run.session_id, run.run_id, (EventType.DONE.value, done))
        except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the run has ended here
            log.warning("run %s: could not release its claim; its lease will lapse", run.run_id,
                        exc_info=not isinstance(exc, DataAgentError))
        finally:
            live.finished.set()
            self._report(live, status)

    def _report(self, live: LiveRun, status: RunStatus) -> None:
        ended = time.monotonic()
        self._telemetry.run_ended(status.value, live.run.reason, ended - live.started_at)
        if live.cancelled_at is not None:
            self._telemetry.cancel_done(ended - live.cancelled_at)

    async def _closed_elsewhere(self, run: ChatRun) -> bool:
        """With several processes (leases), whether the session no longer names this run as its active one."""
        if self._broker.lease_renew_interval_s is None:
            return False
        try:
            session = await self._repo.get_session(run.session_id)
        except Exception:  # noqa: BLE001 - the store is away: the final write below reports it
            return False
        return session is not None and session.active_run_id != run.run_id

    @staticmethod
    def _final_status(live: LiveRun, error: DataAgentError | None) -> RunStatus:
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
        self._publish(run, EventType.ERROR, error_data(error))
