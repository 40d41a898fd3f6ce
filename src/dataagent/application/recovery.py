"""Start-up with the local broker: answers cut off by the death of the previous process (kill -9, OOM) are stored."""

from __future__ import annotations

import logging
from typing import Any

from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.models import Message, Role, RunState, RunStatus

log = logging.getLogger("dataagent.runs")

INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = "The server stopped while this answer was being written"


async def close_interrupted_runs(repository: SessionRepository, clock: Clock, ids: IdGenerator) -> int:
    """For each session the store shows with an active run, store its answer as failed (reason `interrupted`,
    empty: a single process keeps the text in memory only) and free the session; returns how many.

    Only where one process runs every answer (the local broker): with a shared broker another process closes a
    dead owner's runs (worker_lost), and a live one's must be left alone."""
    closed = 0
    for session_id, run_id in await repository.list_active_runs():
        meta: dict[str, Any] = {
            "tool_calls": [], "token_usage": None, "reason": INTERRUPTED,
            "error": {"error_code": INTERRUPTED, "message": INTERRUPTED_MESSAGE},
        }
        answer = Message(ids.new_id("msg"), session_id, Role.ASSISTANT, "", clock.now(), run_id,
                         RunStatus.FAILED.value, meta)
        try:  # the answer and the freed session in one write, as at a run's normal end
            await repository.append_message(answer, RunState(active_run_id=None))
        except SessionNotFoundError:
            continue  # deleted meanwhile
        log.warning("run %s of session %s was cut off by the previous process's end: stored as failed (%s)",
                    run_id, session_id, INTERRUPTED)
        closed += 1
    return closed
