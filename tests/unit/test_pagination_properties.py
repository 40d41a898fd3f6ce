"""Properties of history paging on the in-memory repository: every walk sees each message once, in order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.domain.errors import InvalidInputError, MessageNotFoundError
from dataagent.domain.models import Message, MessagePage, MessagePageQuery, Role, Session

SID = "s-props"
T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LIMITS = st.integers(min_value=1, max_value=15)


def build(order: list[int]) -> tuple[InMemorySessionRepository, list[str]]:
    """A repository with one session of len(order) messages whose ids do not sort in message order.

    Every message has the same timestamp, so only the session's own order can put them in sequence.
    """
    repo = InMemorySessionRepository()
    ids = [f"msg_{k:04d}" for k in order]

    async def fill() -> None:
        await repo.get_or_create_session(Session(SID, "alice", "props", T0, T0))
        for i, message_id in enumerate(ids):
            role = Role.USER if i % 2 == 0 else Role.ASSISTANT
            await repo.append_message(Message(message_id, SID, role, f"content {i}", T0, f"run_{i // 2}"))

    asyncio.run(fill())
    return repo, ids


def page(repo: InMemorySessionRepository, **query: object) -> MessagePage:
    return asyncio.run(repo.list_messages(SID, MessagePageQuery(**query)))  # type: ignore[arg-type]


def message_ids(p: MessagePage) -> list[str]:
    return [m.message_id for m in p.messages]


sizes = st.integers(min_value=0, max_value=60).flatmap(lambda n: st.permutations(list(range(n))))


@given(order=sizes, data=st.data())
def test_walking_forward_by_offset_sees_every_message_once_in_order(order: list[int], data: st.DataObject) -> None:
    repo, ids = build(order)
    n = len(ids)
    seen: list[str] = []
    offset = 0
    while True:
        limit = data.draw(LIMITS, label="limit")
        p = page(repo, limit=limit, offset=offset)
        assert p.total == n
        assert message_ids(p) == ids[offset : offset + limit]
        seen.extend(message_ids(p))
        offset += limit
        assert p.has_more is (offset < n)
        if not p.has_more:
            break
    assert seen == ids


@given(order=sizes, data=st.data())
def test_walking_forward_with_after_cursors_sees_every_message_once_in_order(
    order: list[int], data: st.DataObject
) -> None:
    repo, ids = build(order)
    n = len(ids)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        limit = data.draw(LIMITS, label="limit")
        p = page(repo, limit=limit) if cursor is None else page(repo, limit=limit, after=cursor)
        assert p.total == n
        assert message_ids(p) == ids[len(seen) : len(seen) + limit]
        seen.extend(message_ids(p))
        assert p.has_more is (len(seen) < n)
        if not p.has_more:
            break
        cursor = seen[-1]
    assert seen == ids


@given(order=sizes, data=st.data())
def test_walking_backward_with_before_cursors_sees_every_message_once_in_order(
    order: list[int], data: st.DataObject
) -> None:
    repo, ids = build(order)
    n = len(ids)
    first_limit = data.draw(LIMITS, label="first limit")
    newest = page(repo, limit=first_limit, offset=max(0, n - first_limit))
    assert message_ids(newest) == ids[max(0, n - first_limit) :] and newest.has_more is False
    seen = message_ids(newest)
    more_before = n > first_limit
    while more_before:
        limit = data.draw(LIMITS, label="limit")
        p = page(repo, limit=limit, before=seen[0])
        assert p.total == n
        end = n - len(seen)
        assert message_ids(p) == ids[max(0, end - limit) : end]  # the `limit` just before, oldest first
        seen = message_ids(p) + seen
        assert p.has_more is (len(seen) < n)
        more_before = p.has_more
    assert seen == ids


@given(order=sizes.filter(bool), data=st.data())
def test_any_single_cursor_page_is_the_matching_slice_of_the_history(order: list[int], data: st.DataObject) -> None:
    repo, ids = build(order)
    n = len(ids)
    at = data.draw(st.integers(min_value=0, max_value=n - 1), label="cursor index")
    limit = data.draw(st.integers(min_value=1, max_value=1000), label="limit")
    after = page(repo, limit=limit, after=ids[at])
    assert message_ids(after) == ids[at + 1 : at + 1 + limit]
    assert after.has_more is (at + 1 + limit < n) and after.total == n
    before = page(repo, limit=limit, before=ids[at])
    assert message_ids(before) == ids[max(0, at - limit) : at]
    assert before.has_more is (at - limit > 0) and before.total == n


@given(order=sizes, offset=st.integers(min_value=0, max_value=80), limit=st.integers(min_value=1, max_value=1000))
def test_any_single_offset_page_is_the_matching_slice_and_positions_are_gap_free(
    order: list[int], offset: int, limit: int
) -> None:
    repo, ids = build(order)
    p = page(repo, limit=limit, offset=offset)
    assert message_ids(p) == ids[offset : offset + limit]
    assert [m.position for m in p.messages] == list(range(offset, offset + len(p.messages)))
    assert p.has_more is (offset + limit < len(ids)) and p.total == len(ids)


def test_an_unknown_cursor_is_message_not_found_and_cursors_exclude_each_other_and_offset() -> None:
    repo, ids = build([2, 0, 1])
    for direction in ("after", "before"):
        with pytest.raises(MessageNotFoundError):
            page(repo, **{direction: "msg_nope"})
    with pytest.raises(InvalidInputError):
        MessagePageQuery(after=ids[0], before=ids[1])
    with pytest.raises(InvalidInputError):
        MessagePageQuery(after=ids[0], offset=1)
    with pytest.raises(InvalidInputError):
        MessagePageQuery(limit=0)
