"""The SessionRepository contract for end users (X-User-ID): a session keeps its end user, and a principal's
sessions are listed all together or one end user's alone (every adapter passes the same tests)."""

from __future__ import annotations

from dataagent.application.ports import SessionRepository
from dataagent.domain.callers import Caller
from dataagent.domain.requests import RequestRecord
from tests.contract.helpers import T0, at, new_session


async def test_a_session_keeps_the_end_user_it_was_created_for_and_none_by_default(repo: SessionRepository) -> None:
    created, _ = await repo.get_or_create_session(new_session("s-eu", "backend", end_user="alice@example.com"))
    await repo.get_or_create_session(new_session("s-key", "backend"))
    again, was_new = await repo.get_or_create_session(new_session("s-eu", "backend", at(5), end_user="bob"))
    stored, bare = await repo.get_session("s-eu"), await repo.get_session("s-key")
    assert created.end_user == "alice@example.com" and not was_new and again.end_user == "alice@example.com"
    assert stored is not None and stored.end_user == "alice@example.com" and stored.user_id == "backend"
    assert bare is not None and bare.end_user is None


async def test_list_sessions_with_an_end_user_is_that_end_users_of_that_principal_alone(
    repo: SessionRepository,
) -> None:
    for sid, principal, end_user, seconds in (
        ("a1", "backend", "alice", 1), ("a2", "backend", "alice", 3), ("b1", "backend", "bob", 2),
        ("k1", "backend", None, 4), ("other", "frontend", "alice", 9),
    ):
        await repo.get_or_create_session(new_session(sid, principal, at(seconds), end_user=end_user))
    alice, total = await repo.list_sessions("backend", 10, 0, "alice")
    assert [s.session_id for s in alice] == ["a2", "a1"] and total == 2
    page, total = await repo.list_sessions("backend", 1, 1, "alice")
    assert [s.session_id for s in page] == ["a1"] and total == 2
    everything, total = await repo.list_sessions("backend", 10, 0)
    assert [s.session_id for s in everything] == ["k1", "a2", "b1", "a1"] and total == 4
    assert await repo.list_sessions("backend", 10, 0, "carol") == ([], 0)
    assert [s.session_id for s in (await repo.list_sessions("frontend", 10, 0, "alice"))[0]] == ["other"]


async def test_an_end_users_idempotency_key_is_unrelated_to_the_keys_and_another_end_users(
    repo: SessionRepository,
) -> None:
    owners = [Caller("backend").subject, Caller("backend", "alice").subject, Caller("backend", "bob").subject]
    for number, owner in enumerate(owners):
        assert await repo.claim_request(RequestRecord(owner, "k-1", f"f{number}", T0, at(60))) is None
    await repo.settle_request(owners[1], "k-1", {"run_id": "alice's"})
    alice, bob = await repo.get_request(owners[1], "k-1", at(1)), await repo.get_request(owners[2], "k-1", at(1))
    assert alice is not None and alice.outcome == {"run_id": "alice's"}
    assert bob is not None and bob.outcome is None and bob.fingerprint == "f2"
