"""The MySQL store's group commit: appends waiting together share a transaction, and each still stands alone
in its outcome (real MariaDB, through a proxy the test owns to count and break what goes over the wire)."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.models import Message, MessagePageQuery, RunState
from tests.contract.helpers import at, new_message, new_session
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, database_url, fresh_database
from tests.tcp_proxy import COMMIT, TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


async def history(repo: MySqlSessionRepository, session_id: str) -> list[tuple[str, int]]:
    page = await repo.list_messages(session_id, MessagePageQuery(limit=1000))
    assert page.total == len(page.messages)
    return [(m.message_id, m.position) for m in page.messages]


async def test_a_hundred_appends_at_once_take_a_few_transactions_and_each_lands_once_in_order() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        repo = MySqlSessionRepository.from_url(database_url(db, port=proxy.port))
        await repo.start()
        for i in range(10):
            await repo.get_or_create_session(new_session(f"s{i}"))
        proxy.count(COMMIT)
        appends = [new_message(f"s{n % 10}", f"m{n:03}", when=at(n)) for n in range(100)]
        stored = await asyncio.gather(*(repo.append_message(m, RunState(f"run_{n}")) for n, m in enumerate(appends)))
        assert proxy.counted <= 10, f"{proxy.counted} transactions for 100 appends: they were not batched"
        for i in range(10):  # arrival order within each session, gap-free from 0
            assert await history(repo, f"s{i}") == [(f"m{n:03}", n // 10) for n in range(i, 100, 10)]
            session = await repo.get_session(f"s{i}")
            assert session is not None and session.message_count == 10
            assert session.active_run_id == f"run_{90 + i}" and session.last_active == at(90 + i)
        assert [m.position for m in stored] == [n // 10 for n in range(100)]
        await repo.close()


async def test_one_bad_message_in_a_batch_fails_alone() -> None:
    async with fresh_database() as db:
        repo = MySqlSessionRepository.from_url(database_url(db))
        await repo.start()
        await repo.get_or_create_session(new_session("s1"))
        await repo.append_message(new_message("s1", "taken"))
        batch = [new_message("s1", f"ok{n}") for n in range(8)]
        batch.insert(3, new_message("s1", "taken", "a duplicate id"))
        batch.insert(6, new_message("gone", "lost", "its session does not exist"))
        outcomes = await asyncio.gather(*(repo.append_message(m) for m in batch), return_exceptions=True)
        failed = {m.message_id: type(o).__name__ for m, o in zip(batch, outcomes, strict=True)
                  if isinstance(o, BaseException)}
        assert failed == {"taken": "IntegrityError", "lost": SessionNotFoundError.__name__}
        assert await history(repo, "s1") == [("taken", 0)] + [(f"ok{n}", n + 1) for n in range(8)]
        await repo.close()


async def test_a_batch_whose_commit_answer_is_lost_is_stored_exactly_once() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        repo = MySqlSessionRepository.from_url(database_url(db, port=proxy.port))
        await repo.start()
        for sid in ("a", "b"):
            await repo.get_or_create_session(new_session(sid))
        proxy.lose_reply_after(COMMIT)
        batch = [new_message("ab"[n % 2], f"m{n}") for n in range(10)]
        stored = await asyncio.gather(*(repo.append_message(m, RunState(None)) for m in batch))
        assert proxy.replies_lost == 1
        assert [m.position for m in stored] == [n // 2 for n in range(10)]
        assert await history(repo, "a") == [(f"m{n}", n // 2) for n in range(0, 10, 2)]
        assert await history(repo, "b") == [(f"m{n}", n // 2) for n in range(1, 10, 2)]
        await repo.close()


async def test_an_append_cancelled_before_its_batch_is_written_leaves_no_trace() -> None:
    async with fresh_database() as db:
        repo = MySqlSessionRepository.from_url(database_url(db))
        await repo.start()
        await repo.get_or_create_session(new_session("s1"))
        cancelled = asyncio.create_task(repo.append_message(new_message("s1", "never")))
        await asyncio.sleep(0)  # it has joined the queue; the writer it started has not run yet
        cancelled.cancel()
        kept: Message = await repo.append_message(new_message("s1", "kept"))
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert kept.position == 0 and await history(repo, "s1") == [("kept", 0)]
        await repo.close()


async def test_batches_of_several_workers_on_the_same_sessions_neither_deadlock_nor_lose_order() -> None:
    """Four processes' stores (own pools, own batches) append at once to the same ten sessions: each batch
    locks several sessions, in primary-key order, so none waits in a cycle; every session ends gap-free."""
    async with fresh_database() as db:
        repos = [MySqlSessionRepository.from_url(database_url(db)) for _ in range(4)]
        for repo in repos:
            await repo.start()
        for i in range(10):
            await repos[0].get_or_create_session(new_session(f"s{i}"))
        sids = [f"s{i}" for i in reversed(range(10))]  # each worker meets them in another order

        async def worker(w: int, repo: MySqlSessionRepository) -> list[Message]:
            order = sids[w:] + sids[:w]
            return await asyncio.gather(*(repo.append_message(new_message(order[n % 10], f"w{w}-{n}"))
                                          for n in range(100)))

        stored = [m for ms in await asyncio.gather(*(worker(w, r) for w, r in enumerate(repos))) for m in ms]
        assert len({m.message_id for m in stored}) == 400
        for i in range(10):
            positions = [p for _, p in await history(repos[0], f"s{i}")]
            assert positions == list(range(40))
        assert sorted((m.session_id, m.position) for m in stored) == sorted(
            (f"s{i}", p) for i in range(10) for p in range(40))  # each caller was told its own position
        for repo in repos:
            await repo.close()
