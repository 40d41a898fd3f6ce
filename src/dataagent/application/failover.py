"""Several processes: renew the leases of this process's runs, and close the runs of a process that died."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dataagent.application.hub import EventHub
from dataagent.application.ports import Clock, FinalEvent, IdGenerator, SessionRepository
from dataagent.domain.errors import DataAgentError
from dataagent.domain.events import EventType
from dataagent.domain.models import Message, Role

if TYPE_CHECKING:
    from dataagent.application.runs import RunManager

log = logging.getLogger("dataagent.failover")

WORKER_LOST = "worker_lost"
WORKER_LOST_MESSAGE = "The process running this answer stopped"


async def keep_leases(runs: RunManager, broker: EventHub, interval: float) -> None:
    """Renew the leases of the manager's runs and checkpoint their partial answers, while it has runs."""
    while runs.active_runs:
        await asyncio.sleep(interval)
        checkpoints = runs.checkpoints()
        try:
            await broker.renew_runs(checkpoints)
        except DataAgentError as exc:
            log.warning("could not renew %d run leases: %s", len(checkpoints), exc.code)


class OrphanCloser:
    """Ends a run whose owner died: persists its checkpointed text once, as failed (worker_lost).

    It publishes the `error`; the broker publishes the returned `done` once the session is free."""

    def __init__(self, repository: SessionRepository, broker: EventHub, clock: Clock, ids: IdGenerator) -> None:
        self._repo = repository
        self._broker = broker
        self._clock = clock
        self._ids = ids

    async def close(self, session_id: str, run_id: str) -> FinalEvent | None:
        session = await self._repo.get_session(session_id)
        if session is None or session.active_run_id != run_id:
            return None  # the owner ended it (only its release was lost), or the session is gone
        state = await self._broker.load_checkpoint(session_id, run_id) or {}
        now = self._clock.now()
        meta: dict[str, Any] = {
            "tool_calls": state.get("tool_calls", []), "token_usage": state.get("token_usage"),
            "reason": WORKER_LOST, "error": {"error_code": WORKER_LOST, "message": WORKER_LOST_MESSAGE},
        }
        content = str(state.get("text", ""))
        message = await self._repo.append_message(
            Message(self._ids.new_id("msg"), session_id, Role.ASSISTANT, content, now, run_id, "failed", meta)
        )
        await self._repo.set_run_state(session_id, active_run_id=None, pending_interrupt=None, touched_at=now)
        self._broker.publish(session_id, run_id, EventType.ERROR.value, {
            "error_code": WORKER_LOST, "message": WORKER_LOST_MESSAGE, "recoverable": False,
        })
        log.warning("run %s of session %s: its owner stopped; closed as failed (%s)", run_id, session_id, WORKER_LOST)
        return EventType.DONE.value, {
            "run_id": run_id, "status": "failed", "cancelled": False, "message_id": message.message_id,
            "token_usage": state.get("token_usage"), "reason": WORKER_LOST,
        }
