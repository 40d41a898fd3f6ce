"""The FeedbackStore and VerifiedQueryStore contracts, on the memory adapters and on MariaDB (same tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from dataagent.adapters.memory.feedback import InMemoryFeedbackStore, InMemoryVerifiedQueryStore
from dataagent.adapters.mysql.feedback import MySqlFeedbackStore, MySqlVerifiedQueryStore
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.application.feedback import FeedbackStore
from dataagent.application.ports import SessionRepository
from dataagent.application.verified import VerifiedQueryStore
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.feedback import Feedback, Rating, VerifiedQuery
from dataagent.domain.models import Role
from tests.contract.helpers import T0, at, new_message, new_session
from tests.mysqldb import admin_query

UNICODE = "很好 👍 «ÆØÅ» \U0001f9d1\u200d\U0001f4bb"


@dataclass
class Stores:
    repo: SessionRepository
    feedback: FeedbackStore
    verified: VerifiedQueryStore


@pytest.fixture
async def stores(repo: SessionRepository, request: pytest.FixtureRequest) -> Stores:
    if isinstance(repo, MySqlSessionRepository):
        database: str = request.getfixturevalue("contract_database")
        await admin_query(f"DELETE FROM `{database}`.verified_queries")
        await admin_query(f"DELETE FROM `{database}`.revisions")
        return Stores(repo, MySqlFeedbackStore(repo.engine), MySqlVerifiedQueryStore(repo.engine))
    return Stores(repo, InMemoryFeedbackStore(repo), InMemoryVerifiedQueryStore())


async def answered(repo: SessionRepository, session_id: str = "s1", user_id: str = "alice") -> str:
    await repo.get_or_create_session(new_session(session_id, user_id))
    await repo.append_message(new_message(session_id, f"{session_id}-q", run_id="run_1"))
    await repo.append_message(new_message(session_id, f"{session_id}-a", role=Role.ASSISTANT, run_id="run_1"))
    return f"{session_id}-a"


def rating(message_id: str, principal: str, value: Rating, comment: str = "", when: float = 0) -> Feedback:
    return Feedback("s1", message_id, principal, value, comment, at(when), at(when))


def verified(query_id: str, question: str = "revenue per month", when: float = 0) -> VerifiedQuery:
    return VerifiedQuery(query_id, question, "SELECT 1", "admin", at(when), at(when), None)


async def test_feedback_is_stored_and_read_back_with_unicode(stores: Stores) -> None:
    answer = await answered(stores.repo)
    stored = await stores.feedback.put_feedback(rating(answer, "alice", Rating.UP, UNICODE))
    assert stored == rating(answer, "alice", Rating.UP, UNICODE)
    assert await stores.feedback.get_feedback("s1", answer, "alice") == stored


async def test_feedback_given_again_replaces_rating_and_comment_and_keeps_created_at(stores: Stores) -> None:
    answer = await answered(stores.repo)
    await stores.feedback.put_feedback(rating(answer, "alice", Rating.UP, "fine"))
    changed = await stores.feedback.put_feedback(rating(answer, "alice", Rating.DOWN, "", when=60))
    assert (changed.rating, changed.comment, changed.created_at, changed.updated_at) == (Rating.DOWN, "", T0, at(60))
    assert await stores.feedback.get_feedback("s1", answer, "alice") == changed


async def test_feedback_is_one_per_principal_and_message(stores: Stores) -> None:
    answer = await answered(stores.repo)
    await stores.feedback.put_feedback(rating(answer, "alice", Rating.UP))
    await stores.feedback.put_feedback(rating(answer, "bob", Rating.DOWN))
    alice = await stores.feedback.get_feedback("s1", answer, "alice")
    bob = await stores.feedback.get_feedback("s1", answer, "bob")
    assert alice is not None and alice.rating is Rating.UP and bob is not None and bob.rating is Rating.DOWN
    assert await stores.feedback.get_feedback("s1", answer, "carol") is None
    assert await stores.feedback.get_feedback("s1", "s1-q", "alice") is None
    assert await stores.feedback.get_feedback("other", answer, "alice") is None  # another session's path


async def test_feedback_goes_with_its_session(stores: Stores) -> None:
    answer = await answered(stores.repo)
    await stores.feedback.put_feedback(rating(answer, "alice", Rating.UP))
    await stores.repo.delete_session("s1")
    assert await stores.feedback.get_feedback("s1", answer, "alice") is None
    with pytest.raises(SessionNotFoundError):
        await stores.feedback.put_feedback(rating(answer, "alice", Rating.UP))
    await answered(stores.repo)  # the same ids again: nothing of the old feedback
    assert await stores.feedback.get_feedback("s1", answer, "alice") is None


async def test_verified_queries_are_listed_oldest_first_in_pages(stores: Stores) -> None:
    for n in range(5):
        await stores.verified.add_verified(verified(f"vq_{n}", f"question {n} {UNICODE}", when=n))
    page, total = await stores.verified.list_verified(2, 1)
    assert total == 5 and [q.query_id for q in page] == ["vq_1", "vq_2"]
    assert page[0] == verified("vq_1", f"question 1 {UNICODE}", when=1)
    assert [q.query_id for q in await stores.verified.all_verified()] == [f"vq_{n}" for n in range(5)]
    assert await stores.verified.get_verified("vq_4") == verified("vq_4", f"question 4 {UNICODE}", when=4)
    assert await stores.verified.get_verified("nope") is None


async def test_a_verified_query_is_replaced_and_deleted_by_id_only(stores: Stores) -> None:
    await stores.verified.add_verified(verified("vq_1"))
    changed = replace(verified("vq_1"), question="revenue per week", sql="SELECT 2", updated_at=at(9))
    assert await stores.verified.replace_verified(changed)
    assert await stores.verified.get_verified("vq_1") == changed
    assert not await stores.verified.replace_verified(replace(changed, query_id="vq_2"))
    assert await stores.verified.delete_verified("vq_1")
    assert not await stores.verified.delete_verified("vq_1")
    assert await stores.verified.all_verified() == []


async def test_every_change_of_the_verified_queries_moves_the_revision(stores: Stores) -> None:
    seen = [await stores.verified.verified_revision()]
    await stores.verified.add_verified(verified("vq_1"))
    seen.append(await stores.verified.verified_revision())
    await stores.verified.replace_verified(replace(verified("vq_1"), sql="SELECT 2"))
    seen.append(await stores.verified.verified_revision())
    await stores.verified.delete_verified("vq_1")
    seen.append(await stores.verified.verified_revision())
    assert len(set(seen)) == 4
    await stores.verified.delete_verified("vq_1")  # nothing changed
    assert await stores.verified.verified_revision() == seen[-1]


async def test_every_principals_feedback_is_listed_most_recently_changed_first(stores: Stores) -> None:
    one, two = await answered(stores.repo, "s1"), await answered(stores.repo, "s2", "bob")
    await stores.feedback.put_feedback(rating(one, "alice", Rating.UP, when=1))
    await stores.feedback.put_feedback(replace(rating(two, "bob", Rating.DOWN, when=2), session_id="s2"))
    await stores.feedback.put_feedback(rating(one, "carol", Rating.UP, when=3))
    page, total = await stores.feedback.list_feedback(None, 2, 0)
    assert total == 3 and [(f.message_id, f.principal) for f in page] == [(one, "carol"), (two, "bob")]
    ups, total = await stores.feedback.list_feedback(Rating.UP, 10, 1)
    assert total == 2 and [(f.message_id, f.principal) for f in ups] == [(one, "alice")]
    await stores.repo.delete_session("s1")
    assert await stores.feedback.list_feedback(None, 10, 0) == ([await stores.feedback.get_feedback(
        "s2", two, "bob")], 1)
