"""The SessionRepository contract under concurrency, for approvals and for expiry (every adapter)."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.application.ports import SessionRepository
from dataagent.domain.approvals import Decision, DecisionSource, DecisionType
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.models import MessagePageQuery, Role
from tests.contract.helpers import T0, approval, at, history_ids, new_message, new_session, seeded

WRITERS = 100


async def test_100_concurrent_appends_to_one_session_take_positions_0_to_99_once_each(
    repo: SessionRepository,
) -> None:
    await repo.get_or_create_session(new_session("hot"))
    ids = [f"w{i:03d}" for i in range(WRITERS)]
    stored = await asyncio.gather(*(repo.append_message(new_message("hot", i, f"from {i}")) for i in ids))
    assert sorted(m.position for m in stored) == list(range(WRITERS))
    page = await repo.list_messages("hot", MessagePageQuery(limit=1000))
    assert [m.position for m in page.messages] == list(range(WRITERS)) and page.total == WRITERS
    assert sorted(m.message_id for m in page.messages) == ids
    by_id = {m.message_id: m.position for m in stored}
    assert all(by_id[m.message_id] == m.position and m.content == f"from {m.message_id}" for m in page.messages)
    session = await repo.get_session("hot")
    assert session is not None and session.message_count == WRITERS


async def test_100_concurrent_writers_on_100_sessions_lose_duplicate_and_reorder_nothing(
    repo: SessionRepository,
) -> None:
    async def writer(n: int) -> None:
        sid = f"s{n:03d}"
        await repo.get_or_create_session(new_session(sid, f"user{n % 7}"))
        for k in range(5):
            await repo.append_message(new_message(sid, f"{sid}-{k}", role=Role.USER if k % 2 == 0 else Role.TOOL))

    await asyncio.gather(*(writer(n) for n in range(WRITERS)))
    for n in range(WRITERS):
        sid = f"s{n:03d}"
        assert await history_ids(repo, sid) == [f"{sid}-{k}" for k in range(5)]
    totals = [(await repo.list_sessions(f"user{u}", 100, 0))[1] for u in range(7)]
    assert sum(totals) == WRITERS


async def test_concurrent_creations_of_one_id_store_it_once(repo: SessionRepository) -> None:
    results = await asyncio.gather(
        *(repo.get_or_create_session(new_session("race", f"user{i}")) for i in range(20))
    )
    assert sum(created for _, created in results) == 1
    owner = next(s.user_id for s, created in results if created)
    assert {s.user_id for s, _ in results} == {owner}


async def test_an_approval_is_stored_undecided_and_its_first_decision_wins(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1"))
    record = approval("s1", "int_1")
    await repo.save_interrupt(record)
    stored = await repo.get_interrupt("s1", "int_1")
    assert stored is not None and stored.request == record.request and stored.decision is None
    edit = Decision(DecisionType.EDIT, {"sql": "SELECT 2 -- 改"}, "narrower ✂", DecisionSource.CLIENT)
    assert await repo.resolve_interrupt("s1", "int_1", edit, at(5)) is True
    assert await repo.resolve_interrupt("s1", "int_1", Decision(DecisionType.APPROVE), at(6)) is False
    decided = await repo.get_interrupt("s1", "int_1")
    assert decided is not None and decided.decision == edit and decided.decided_at == at(5)
    assert await repo.get_interrupt("other", "int_1") is None
    assert await repo.resolve_interrupt("s1", "int_unknown", edit, at(7)) is False
    with pytest.raises(SessionNotFoundError):
        await repo.save_interrupt(approval("ghost", "int_2"))


async def test_concurrent_decisions_on_one_approval_exactly_one_wins(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1"))
    await repo.save_interrupt(approval("s1", "int_1"))
    decisions = [
        Decision(DecisionType.REJECT, message=f"no {i}", source=DecisionSource.CLIENT if i else DecisionSource.TIMEOUT)
        for i in range(10)
    ]
    won = await asyncio.gather(*(repo.resolve_interrupt("s1", "int_1", d, at(i)) for i, d in enumerate(decisions)))
    assert won.count(True) == 1
    stored = await repo.get_interrupt("s1", "int_1")
    assert stored is not None and stored.decision == decisions[won.index(True)]


async def test_expiry_deletes_only_idle_sessions_without_a_run_up_to_the_limit(repo: SessionRepository) -> None:
    for n in range(5):
        await seeded(repo, f"old{n}", 3)  # last_active T0
    await repo.get_or_create_session(new_session("fresh", when=at(7200)))
    await repo.set_run_state("old4", active_run_id="run_busy", pending_interrupt=None)
    cutoff = at(3600)
    first = await repo.delete_idle_sessions(cutoff, 3)
    rest = await repo.delete_idle_sessions(cutoff, 3)
    assert len(first) == 3 and len(rest) == 1
    assert sorted(first + rest) == ["old0", "old1", "old2", "old3"]
    assert await repo.delete_idle_sessions(cutoff, 3) == []
    for sid in first + rest:
        assert await repo.get_session(sid) is None and await repo.get_message(sid, f"{sid}-m000-0") is None
    assert await repo.get_session("old4") is not None and await repo.get_session("fresh") is not None
    assert await repo.delete_idle_sessions(T0, 10) == []  # idle since *before* the cutoff


async def test_concurrent_expiry_sweeps_delete_each_idle_session_once(repo: SessionRepository) -> None:
    idle = [f"idle{n:02d}" for n in range(40)]
    for sid in idle:
        await repo.get_or_create_session(new_session(sid))
        await repo.append_message(new_message(sid, f"{sid}-m"))
    batches = await asyncio.gather(*(repo.delete_idle_sessions(at(60), 15) for _ in range(4)))
    swept = [sid for batch in batches for sid in batch]
    assert len(swept) == len(set(swept))
    while True:
        more = await repo.delete_idle_sessions(at(60), 15)
        if not more:
            break
        swept.extend(more)
    assert sorted(swept) == idle
    assert (await repo.list_sessions("alice", 100, 0))[1] == 0
