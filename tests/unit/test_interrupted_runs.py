"""Start-up with the local broker stores each answer the previous process cut off, once (issue 17, item 11)."""

from __future__ import annotations

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.recovery import close_interrupted_runs
from dataagent.domain.models import MessagePageQuery, RunState
from tests.contract.helpers import new_message, new_session


async def test_each_cut_off_answer_is_stored_as_failed_interrupted_and_its_session_freed_once() -> None:
    repo = InMemorySessionRepository()
    for sid in ("cut", "idle"):
        await repo.get_or_create_session(new_session(sid))
    await repo.append_message(new_message("cut", "question"), RunState(active_run_id="run_1"))
    clock, ids = SystemClock(), UuidIdGenerator()
    assert await close_interrupted_runs(repo, clock, ids) == 1
    assert await close_interrupted_runs(repo, clock, ids) == 0
    page = await repo.list_messages("cut", MessagePageQuery())
    answer = page.messages[-1]
    assert page.total == 2 and (answer.role.value, answer.status, answer.run_id) == ("assistant", "failed", "run_1")
    assert answer.content == "" and answer.metadata["reason"] == "interrupted"
    session = await repo.get_session("cut")
    assert session is not None and session.active_run_id is None
    assert (await repo.list_messages("idle", MessagePageQuery())).total == 0
