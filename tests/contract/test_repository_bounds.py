"""The contract behind the per-principal bounds: a session's stored bytes, and the bounds checked on them."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.application.bounds import Bounds, SessionBounds
from dataagent.application.ports import SessionRepository
from dataagent.domain.errors import SessionFullError, SessionNotFoundError, TooManySessionsError
from dataagent.domain.models import Role, RunState, stored_size
from tests.contract.helpers import new_message, new_session

UNICODE = "你好 🌏 «ÆØÅ»"


async def test_a_session_stores_zero_bytes_and_each_append_adds_its_content_and_metadata(
    repo: SessionRepository,
) -> None:
    created, _ = await repo.get_or_create_session(new_session("b1"))
    assert created.stored_bytes == 0
    first = new_message("b1", "b1-m1", UNICODE)
    second = new_message("b1", "b1-m2", "answer", role=Role.ASSISTANT, metadata={"tool_calls": [], "标签": "✓"})
    await repo.append_message(first)
    await repo.append_message(second, RunState(active_run_id=None))
    stored = await repo.get_session("b1")
    assert stored is not None
    assert stored.stored_bytes == stored_size(first.content, first.metadata) + stored_size(
        second.content, second.metadata) == len(UNICODE.encode()) + 6 + len('{"tool_calls":[],"标签":"✓"}'.encode())
    listed, _ = await repo.list_sessions("alice", 10, 0)
    assert [s.stored_bytes for s in listed] == [stored.stored_bytes]


async def test_concurrent_appends_to_several_sessions_add_up_exactly(repo: SessionRepository) -> None:
    for sid in ("c1", "c2"):
        await repo.get_or_create_session(new_session(sid))
    messages = [new_message(sid, f"{sid}-m{i}", "x" * (i + 1) + UNICODE, metadata={"i": i} if i % 2 else {})
                for i in range(40) for sid in ("c1", "c2")]
    await asyncio.gather(*(repo.append_message(m) for m in messages))  # group-committed batches on MySQL
    for sid in ("c1", "c2"):
        stored = await repo.get_session(sid)
        assert stored is not None
        assert stored.stored_bytes == sum(stored_size(m.content, m.metadata) for m in messages if m.session_id == sid)


async def test_a_session_created_again_after_its_deletion_starts_from_zero(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("d1"))
    await repo.append_message(new_message("d1", "d1-m1", "some content"))
    await repo.delete_session("d1")
    again, was_new = await repo.get_or_create_session(new_session("d1"))
    assert was_new and again.stored_bytes == 0


async def test_a_principal_past_its_session_bound_is_refused_and_the_extra_session_not_kept(
    repo: SessionRepository,
) -> None:
    bounds = Bounds(repo, SessionBounds(max_sessions_per_principal=2))
    for sid in ("p1", "p2"):
        session, _ = await repo.get_or_create_session(new_session(sid, "alice"))
        await bounds.admit_new_session(session)
    third, _ = await repo.get_or_create_session(new_session("p3", "alice"))
    with pytest.raises(TooManySessionsError) as refused:
        await bounds.admit_new_session(third)
    assert refused.value.details == {"max_sessions": 2}
    assert await repo.get_session("p3") is None
    other, _ = await repo.get_or_create_session(new_session("q1", "bob"))
    await bounds.admit_new_session(other)  # the bound is per principal


async def test_an_append_that_would_pass_the_session_bound_is_refused_and_stores_nothing(
    repo: SessionRepository,
) -> None:
    await repo.get_or_create_session(new_session("f1"))
    await repo.append_message(new_message("f1", "f1-m1", "a" * 1000), max_session_bytes=1024)
    await repo.append_message(new_message("f1", "f1-m2", "b" * 24), RunState("run_1"), max_session_bytes=1024)
    with pytest.raises(SessionFullError) as refused:
        await repo.append_message(new_message("f1", "f1-m3", "é"), RunState("run_2"), max_session_bytes=1024)
    assert refused.value.details == {"max_session_bytes": 1024, "stored_bytes": 1024, "question_bytes": 2}
    session = await repo.get_session("f1")
    assert session is not None and session.stored_bytes == 1024 and session.message_count == 2
    assert session.active_run_id == "run_1"  # the refused append's run state was not written either
    answer = await repo.append_message(new_message("f1", "f1-m4", "an answer, unbounded", role=Role.ASSISTANT))
    assert answer.position == 2
    with pytest.raises(SessionNotFoundError):
        await repo.append_message(new_message("gone", "g-m1"), max_session_bytes=1024)


async def test_bounded_appends_at_the_same_moment_stop_exactly_at_the_bound(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("g1"))
    results = await asyncio.gather(
        *(repo.append_message(new_message("g1", f"g1-m{i}", "x" * 100), max_session_bytes=1050) for i in range(30)),
        return_exceptions=True,
    )  # group-committed batches on MySQL: the bound holds inside a batch too
    assert sum(not isinstance(r, Exception) for r in results) == 10
    assert all(isinstance(r, SessionFullError) for r in results if isinstance(r, Exception))
    session = await repo.get_session("g1")
    assert session is not None and session.stored_bytes == 1000 and session.message_count == 10
