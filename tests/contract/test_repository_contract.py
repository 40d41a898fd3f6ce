"""The SessionRepository contract: sessions, messages, order and paging (every adapter passes the same tests)."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest

from dataagent.application.ports import SessionRepository
from dataagent.domain.errors import MessageNotFoundError, SessionNotFoundError
from dataagent.domain.models import MessagePageQuery, Role, RunState
from dataagent.domain.requests import QueuedRun, RequestRecord
from tests.contract.helpers import T0, approval, at, history_ids, new_message, new_session, seeded

UNICODE = "你好，世界 🌏🎉 «ÆØÅ» ∑ \U0001f9d1\u200d\U0001f4bb"


async def test_a_session_is_created_once_and_then_returned_as_first_stored(repo: SessionRepository) -> None:
    created, was_new = await repo.get_or_create_session(new_session("s1", "alice", metadata={"k": 1}))
    assert was_new and created.user_id == "alice" and created.message_count == 0
    again, was_new = await repo.get_or_create_session(new_session("s1", "bob", at(9)))
    assert not was_new and again.user_id == "alice" and again.created_at == T0 and again.metadata == {"k": 1}
    assert await repo.get_session("s1") == created
    assert await repo.get_session("nope") is None


async def test_session_ids_are_exact_not_case_folded(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("Tab-1", "alice"))
    other, was_new = await repo.get_or_create_session(new_session("tab-1", "bob"))
    assert was_new and other.user_id == "bob"
    assert (await repo.get_session("TAB-1")) is None


async def test_every_session_field_round_trips_with_unicode_json_and_aware_utc_times(
    repo: SessionRepository,
) -> None:
    metadata = {"lang": UNICODE, "nested": {"list": [1, 2.5, None, True, "x"]}, "empty": {}}
    pending = {"interrupt_id": "int_1", "action": {"name": "run_sql", "args": {"sql": "SELECT '✓'"}}}
    session = new_session("s-uni", "principal ✨", metadata=metadata)
    session.title = UNICODE
    await repo.get_or_create_session(session)
    await repo.set_run_state("s-uni", active_run_id="run_7", pending_interrupt=pending)
    stored = await repo.get_session("s-uni")
    assert stored is not None
    assert stored.title == UNICODE and stored.user_id == "principal ✨"
    assert stored.metadata == metadata and stored.pending_interrupt == pending and stored.active_run_id == "run_7"
    assert stored.created_at == T0 and stored.created_at.tzinfo is not None
    assert stored.created_at.utcoffset() == timedelta(0) and stored.created_at.microsecond == 123456


async def test_appends_take_gap_free_positions_and_bump_count_and_last_active(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1"))
    first = await repo.append_message(new_message("s1", "a", when=at(10)))
    second = await repo.append_message(new_message("s1", "b", when=at(5)))  # an older clock: last_active stays
    assert (first.position, second.position) == (0, 1)
    session = await repo.get_session("s1")
    assert session is not None and session.message_count == 2 and session.last_active == at(10)
    assert await repo.get_message("s1", "b") == second


async def test_appending_to_an_unknown_session_is_session_not_found(repo: SessionRepository) -> None:
    with pytest.raises(SessionNotFoundError):
        await repo.append_message(new_message("ghost", "m1"))
    with pytest.raises(SessionNotFoundError):
        await repo.list_messages("ghost", MessagePageQuery())


async def test_every_role_status_and_metadata_round_trip(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1"))
    table = {"columns": ["城市", "n"], "rows": [["上海", 3], ["Zürich", 1]], "row_count": 2, "truncated": False}
    sent = [
        new_message("s1", "u", UNICODE, role=Role.USER, run_id="run_1", metadata={"client": "web"}),
        new_message("s1", "t", "3 rows", role=Role.TOOL, run_id="run_1", status="success",
                    metadata={"tool_name": "run_sql", "table": table}),
        new_message("s1", "x", "partial", role=Role.ASSISTANT, run_id="run_1", status="cancelled",
                    metadata={"tool_calls": [], "token_usage": None, "reason": "user"}),
    ]
    for message in sent:
        await repo.append_message(message)
    page = await repo.list_messages("s1", MessagePageQuery())
    for position, (stored, original) in enumerate(zip(page.messages, sent, strict=True)):
        assert stored.role == original.role and stored.content == original.content
        assert stored.status == original.status and stored.metadata == original.metadata
        assert stored.run_id == "run_1" and stored.position == position and stored.created_at == T0


async def test_a_5_mb_message_with_quotes_backslashes_and_nul_round_trips(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("big"))
    chunk = "数据 'quoted' \"double\" back\\slash \x00 nul\r\n emoji 🎉 "
    content = (chunk * (5 * 1024 * 1024 // len(chunk.encode())))[: 5 * 1024 * 1024 // 2] * 2
    assert len(content.encode()) > 5 * 1024 * 1024
    stored = await repo.append_message(new_message("big", "huge", content, role=Role.TOOL))
    assert stored.position == 0
    fetched = await repo.get_message("big", "huge")
    assert fetched is not None and fetched.content == content


async def test_messages_at_the_same_instant_keep_their_append_order(repo: SessionRepository) -> None:
    ids = await seeded(repo, "s1", 30)
    assert sorted(ids) != ids
    assert await history_ids(repo, "s1") == ids
    page = await repo.list_messages("s1", MessagePageQuery(limit=1000))
    assert [m.position for m in page.messages] == list(range(30))


async def test_offset_pages_with_total_and_has_more(repo: SessionRepository) -> None:
    ids = await seeded(repo, "s1", 25)
    pages = [await repo.list_messages("s1", MessagePageQuery(limit=10, offset=o)) for o in (0, 10, 20, 25, 40)]
    assert [[m.message_id for m in p.messages] for p in pages] == [ids[0:10], ids[10:20], ids[20:], [], []]
    assert [p.has_more for p in pages] == [True, True, False, False, False]
    assert {p.total for p in pages} == {25}
    empty = await repo.get_or_create_session(new_session("empty"))
    assert empty[1]
    nothing = await repo.list_messages("empty", MessagePageQuery())
    assert (nothing.messages, nothing.total, nothing.has_more) == ([], 0, False)


async def test_after_and_before_cursors_page_forward_and_backward(repo: SessionRepository) -> None:
    ids = await seeded(repo, "s1", 12)
    after = await repo.list_messages("s1", MessagePageQuery(limit=5, after=ids[2]))
    assert [m.message_id for m in after.messages] == ids[3:8] and after.has_more and after.total == 12
    tail = await repo.list_messages("s1", MessagePageQuery(limit=5, after=ids[8]))
    assert [m.message_id for m in tail.messages] == ids[9:] and not tail.has_more
    last = await repo.list_messages("s1", MessagePageQuery(limit=5, after=ids[11]))
    assert last.messages == [] and not last.has_more
    before = await repo.list_messages("s1", MessagePageQuery(limit=4, before=ids[9]))
    assert [m.message_id for m in before.messages] == ids[5:9] and before.has_more and before.total == 12
    head = await repo.list_messages("s1", MessagePageQuery(limit=4, before=ids[3]))
    assert [m.message_id for m in head.messages] == ids[0:3] and not head.has_more
    first = await repo.list_messages("s1", MessagePageQuery(limit=4, before=ids[0]))
    assert first.messages == [] and not first.has_more


async def test_a_cursor_of_another_session_or_unknown_is_message_not_found(repo: SessionRepository) -> None:
    await seeded(repo, "s1", 3)
    other = await seeded(repo, "s2", 3)
    for query in (MessagePageQuery(after="nope"), MessagePageQuery(before="nope"),
                  MessagePageQuery(after=other[0]), MessagePageQuery(before=other[1])):
        with pytest.raises(MessageNotFoundError):
            await repo.list_messages("s1", query)


async def test_get_message_only_finds_a_message_in_its_own_session(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1"))
    await repo.get_or_create_session(new_session("s2"))
    await repo.append_message(new_message("s1", "only-in-s1"))
    assert await repo.get_message("s2", "only-in-s1") is None
    assert await repo.get_message("s1", "missing") is None
    assert await repo.get_message("ghost", "only-in-s1") is None


async def test_list_sessions_is_the_principals_own_most_recent_first_then_by_id(repo: SessionRepository) -> None:
    for sid, seconds in (("a", 1), ("b", 3), ("c", 2), ("d", 3), ("e", 0)):
        await repo.get_or_create_session(new_session(sid, "alice", at(seconds)))
    await repo.get_or_create_session(new_session("z-bob", "bob", at(99)))
    await repo.append_message(new_message("e", "bump", when=at(5)))
    page, total = await repo.list_sessions("alice", 10, 0)
    assert [s.session_id for s in page] == ["e", "d", "b", "c", "a"] and total == 5
    second, total = await repo.list_sessions("alice", 2, 2)
    assert [s.session_id for s in second] == ["b", "c"] and total == 5
    beyond, total = await repo.list_sessions("alice", 2, 10)
    assert beyond == [] and total == 5
    assert await repo.list_sessions("carol", 10, 0) == ([], 0)


async def test_count_sessions_is_the_principals_total_through_creates_and_both_kinds_of_delete(
        repo: SessionRepository) -> None:
    for sid, seconds in (("a", 1), ("b", 2), ("c", 50)):
        await repo.get_or_create_session(new_session(sid, "alice", at(seconds)))
    await repo.get_or_create_session(new_session("u", "alice", at(60), end_user="u1"))  # an end user's counts
    await repo.get_or_create_session(new_session("a", "alice", at(70)))  # an existing id: not a new one
    await repo.get_or_create_session(new_session("z", "bob", at(1)))
    assert (await repo.count_sessions("alice"), await repo.count_sessions("bob")) == (4, 1)
    assert await repo.count_sessions("alice") == (await repo.list_sessions("alice", 1, 0))[1]
    assert await repo.delete_session("b") and not await repo.delete_session("b")
    assert await repo.delete_idle_sessions(at(10), 10) in (["a", "z"], ["z", "a"])
    assert [await repo.count_sessions(who) for who in ("alice", "bob", "carol")] == [2, 0, 0]


async def test_run_state_is_recorded_and_cleared_and_touch_only_moves_forward(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1", when=at(10)))
    await repo.set_run_state("s1", active_run_id="run_1", pending_interrupt={"interrupt_id": "i"}, touched_at=at(20))
    await repo.set_run_state("s1", active_run_id="run_1", pending_interrupt=None, touched_at=at(15))
    session = await repo.get_session("s1")
    assert session is not None and session.active_run_id == "run_1" and session.pending_interrupt is None
    assert session.last_active == at(20)
    await repo.set_run_state("s1", active_run_id=None, pending_interrupt=None)
    session = await repo.get_session("s1")
    assert session is not None and session.active_run_id is None and session.last_active == at(20)
    await repo.set_run_state("ghost", active_run_id="run_x", pending_interrupt=None)  # no error, no row
    assert await repo.get_session("ghost") is None


async def test_an_append_can_record_the_run_state_in_the_same_write(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("s1", when=at(10)))
    await repo.append_message(new_message("s1", "m1", when=at(11)), RunState(active_run_id="run_1"))
    session = await repo.get_session("s1")
    assert session is not None and session.active_run_id == "run_1" and session.message_count == 1
    await repo.set_run_state("s1", active_run_id="run_1", pending_interrupt={"interrupt_id": "i"})
    await repo.append_message(new_message("s1", "m2", when=at(12), role=Role.ASSISTANT), RunState(None))
    session = await repo.get_session("s1")
    assert session is not None and session.active_run_id is None and session.pending_interrupt is None
    assert session.message_count == 2 and session.last_active == at(12)
    await repo.append_message(new_message("s1", "m3", when=at(13)))  # without a run state: left as it is
    session = await repo.get_session("s1")
    assert session is not None and session.active_run_id is None and session.message_count == 3


async def test_clear_run_states_forgets_every_active_run_and_pending_approval(repo: SessionRepository) -> None:
    for sid in ("idle", "running", "waiting"):
        await repo.get_or_create_session(new_session(sid))
    await repo.set_run_state("running", active_run_id="run_1", pending_interrupt=None, touched_at=at(7))
    await repo.set_run_state("waiting", active_run_id="run_2", pending_interrupt={"interrupt_id": "i"})
    assert await repo.clear_run_states() == 2
    for sid in ("idle", "running", "waiting"):
        session = await repo.get_session(sid)
        assert session is not None and session.active_run_id is None and session.pending_interrupt is None
    running = await repo.get_session("running")
    assert running is not None and running.last_active == at(7)
    assert await repo.clear_run_states() == 0


async def test_list_active_runs_names_each_session_that_records_one(repo: SessionRepository) -> None:
    for sid in ("idle", "running", "waiting"):
        await repo.get_or_create_session(new_session(sid))
    await repo.set_run_state("running", active_run_id="run_1", pending_interrupt=None)
    await repo.set_run_state("waiting", active_run_id="run_2", pending_interrupt={"interrupt_id": "i"})
    assert sorted(await repo.list_active_runs()) == [("running", "run_1"), ("waiting", "run_2")]
    await repo.clear_run_states()
    assert await repo.list_active_runs() == []


async def test_delete_session_removes_its_messages_and_approvals(repo: SessionRepository) -> None:
    ids = await seeded(repo, "s1", 4)
    await repo.save_interrupt(approval("s1", "int_1"))
    await seeded(repo, "keep", 2)
    assert await repo.delete_session("s1") is True
    assert await repo.get_session("s1") is None and await repo.get_message("s1", ids[0]) is None
    assert await repo.get_interrupt("s1", "int_1") is None
    assert await repo.delete_session("s1") is False
    await repo.get_or_create_session(new_session("s1"))  # the id is free again, with an empty history
    assert (await repo.list_messages("s1", MessagePageQuery())).total == 0
    assert await repo.get_interrupt("s1", "int_1") is None
    assert len(await history_ids(repo, "keep")) == 2


async def test_times_in_another_zone_are_stored_as_the_same_instant(repo: SessionRepository) -> None:
    shanghai = timezone(timedelta(hours=8))
    await repo.get_or_create_session(new_session("tz", when=T0.astimezone(shanghai)))
    await repo.append_message(new_message("tz", "m", when=at(1).astimezone(shanghai)))
    session, message = await repo.get_session("tz"), await repo.get_message("tz", "m")
    assert session is not None and session.created_at == T0 and session.last_active == at(1)
    assert message is not None and message.created_at == at(1)


# -- idempotency keys and queued questions -------------------------------------------------------------------


async def test_a_request_key_is_claimed_once_settled_released_and_expires(repo: SessionRepository) -> None:
    first = RequestRecord("alice", "k-1", "f1", T0, at(60))
    assert await repo.claim_request(first) is None
    held = await repo.claim_request(RequestRecord("alice", "k-1", "f2", at(1), at(61)))
    assert held is not None and held.fingerprint == "f1" and held.outcome is None
    assert await repo.claim_request(RequestRecord("bob", "k-1", "f3", at(1), at(61))) is None  # per principal
    await repo.settle_request("alice", "k-1", {"run_id": "run_1", "session_id": "s1"})
    settled = await repo.get_request("alice", "k-1", at(2))
    assert settled is not None and settled.outcome == {"run_id": "run_1", "session_id": "s1"}
    assert await repo.get_request("alice", "k-1", at(60)) is None  # expired
    assert await repo.claim_request(RequestRecord("alice", "k-1", "f4", at(61), at(120))) is None
    await repo.release_request("alice", "k-1")
    assert await repo.get_request("alice", "k-1", at(62)) is None
    assert await repo.delete_expired_requests(at(200), 10) == 1  # bob's


async def test_queued_runs_keep_their_order_and_bound_and_go_with_the_session(repo: SessionRepository) -> None:
    await repo.get_or_create_session(new_session("sq", "alice"))
    assert await repo.enqueue_run(QueuedRun("sq", "run_a", "a", T0, {"k": 1}), 2) == 1
    assert await repo.enqueue_run(QueuedRun("sq", "run_b", "b", T0), 2) == 2
    assert await repo.enqueue_run(QueuedRun("sq", "run_c", "c", T0), 2) is None
    assert await repo.enqueue_run(QueuedRun("sq", "run_f", "f", T0), None, front=True) == 1
    head = await repo.next_queued_run("sq")
    assert head is not None and head.run_id == "run_f"
    assert await repo.take_queued_run("sq", "run_f") and not await repo.take_queued_run("sq", "run_f")
    head = await repo.next_queued_run("sq")
    assert head is not None and (head.run_id, head.question, head.metadata) == ("run_a", "a", {"k": 1})
    assert await repo.delete_session("sq")
    assert await repo.next_queued_run("sq") is None
    with pytest.raises(SessionNotFoundError):
        await repo.enqueue_run(QueuedRun("sq", "run_d", "d", T0), 2)
