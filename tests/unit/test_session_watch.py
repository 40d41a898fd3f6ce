"""SessionWatch: whose a session id is, decided in one place for REST, WebSocket and SSE alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataagent.adapters.memory.broker import InMemoryRunBroker
from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.application.watch import Ownership, SessionWatch
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.models import Session

NOW = datetime(2026, 12, 5, tzinfo=UTC)


@pytest.fixture
def repo() -> InMemorySessionRepository:
    return InMemorySessionRepository()


@pytest.fixture
def broker() -> InMemoryRunBroker:
    return InMemoryRunBroker()


@pytest.fixture
def watch(repo: InMemorySessionRepository, broker: InMemoryRunBroker) -> SessionWatch:
    return SessionWatch(repo, broker)


async def create(repo: InMemorySessionRepository, session_id: str, owner: str) -> None:
    await repo.get_or_create_session(Session(session_id, owner, "t", NOW, NOW))


async def test_an_id_nobody_uses_is_unused_and_watched_all_the_same(watch: SessionWatch) -> None:
    result = await watch.watch("alice", "new-id", None, 10)
    assert result.ownership is Ownership.UNUSED
    assert result.subscription is not None and result.last_seq >= 0 and result.active_run_id is None
    result.subscription.close()


async def test_the_owners_session_is_owned_and_subscribed(
    watch: SessionWatch, repo: InMemorySessionRepository, broker: InMemoryRunBroker
) -> None:
    await create(repo, "s1", "alice")
    result = await watch.watch("alice", "s1", None, 10)
    assert result.ownership is Ownership.OWNED and result.subscription is not None
    event = broker.publish("s1", None, "text", {"content": "hi", "is_final": False})
    assert await result.subscription.get_batch() == [event]
    result.subscription.close()


async def test_another_principals_session_is_foreign_and_not_subscribed(
    watch: SessionWatch, repo: InMemorySessionRepository
) -> None:
    await create(repo, "s1", "alice")
    result = await watch.watch("bob", "s1", None, 10)
    assert result.ownership is Ownership.FOREIGN and result.subscription is None


async def test_owned_raises_session_not_found_for_a_missing_or_foreign_id(
    watch: SessionWatch, repo: InMemorySessionRepository
) -> None:
    await create(repo, "s1", "alice")
    assert (await watch.owned("alice", "s1")).session_id == "s1"
    with pytest.raises(SessionNotFoundError):
        await watch.owned("bob", "s1")
    with pytest.raises(SessionNotFoundError):
        await watch.owned("alice", "missing")


async def test_a_deleted_then_recreated_id_belongs_to_its_new_owner_only(
    watch: SessionWatch, repo: InMemorySessionRepository
) -> None:
    await create(repo, "s1", "alice")
    assert await watch.ownership("alice", "s1") is Ownership.OWNED
    await repo.delete_session("s1")
    assert await watch.ownership("alice", "s1") is Ownership.UNUSED
    await create(repo, "s1", "bob")
    assert await watch.ownership("alice", "s1") is Ownership.FOREIGN
    assert await watch.ownership("bob", "s1") is Ownership.OWNED


async def test_resume_replays_held_events_of_an_owned_session_only(
    watch: SessionWatch, repo: InMemorySessionRepository, broker: InMemoryRunBroker
) -> None:
    await create(repo, "s1", "alice")
    first = broker.publish("s1", None, "text", {"content": "a", "is_final": False})
    second = broker.publish("s1", None, "text", {"content": "b", "is_final": False})
    owned = await watch.resume("alice", "s1", first.seq - 1)
    assert owned.ownership is Ownership.OWNED and owned.complete
    assert [e.seq for e in owned.events] == [first.seq, second.seq]
    foreign = await watch.resume("bob", "s1", first.seq - 1)
    assert foreign.ownership is Ownership.FOREIGN and foreign.events == []
    unused = await watch.resume("alice", "other", 0)
    assert unused.ownership is Ownership.UNUSED and unused.events == []


async def test_resume_after_events_no_longer_held_is_incomplete(
    repo: InMemorySessionRepository,
) -> None:
    broker = InMemoryRunBroker(replay_events=2)
    watch = SessionWatch(repo, broker)
    await create(repo, "s1", "alice")
    events = [broker.publish("s1", None, "text", {"content": str(i), "is_final": False}) for i in range(5)]
    result = await watch.resume("alice", "s1", events[0].seq)
    assert result.ownership is Ownership.OWNED and not result.complete
