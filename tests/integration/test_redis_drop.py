"""A dropped session on the Redis broker: every process fails its subscribers, the stream goes, seqs jump."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import RunEvent
from tests.integration.test_redis_broker import brokers, text, transport

pytestmark = [pytest.mark.integration, pytest.mark.redis]


async def test_a_drop_on_one_process_fails_the_subscribers_of_every_process_and_empties_the_replay() -> None:
    async with brokers(2) as (a, b):
        assert await a.claim_run("s", "alice-run")
        old = text(a, "s", "alice-run", 5)
        await a.release_run("s", "alice-run", ("done", {"run_id": "alice-run"}))
        on_a, on_b = await a.subscribe("s", None, 100), await b.subscribe("s", None, 100)
        await b.drop_session("s")
        for subscription in (on_a, on_b):
            with pytest.raises(SessionNotFoundError):
                async with asyncio.timeout(5):
                    while True:
                        await subscription.get_batch()
        for broker in (a, b):
            assert await broker.replay("s", old[0].seq - 1) == ([], False)
            assert await broker.last_seq("s") > old[-1].seq + 1  # the next life numbers apart from this one
        assert await b.claim_run("s", "bob-run")
        new = text(b, "s", "bob-run", 3)
        assert new[0].seq >= old[-1].seq + 3
        await transport(b).outbox.flush()
        held, complete = await a.replay("s", old[0].seq - 1)
        assert (held, complete) == ([], False)
        held, complete = await a.replay("s", new[0].seq - 1)
        assert complete and [e.run_id for e in held] == ["bob-run"] * 3


async def test_a_late_flush_of_a_dropped_sessions_events_is_not_held_for_its_next_life() -> None:
    async with brokers(2) as (owner, other):
        assert await owner.claim_run("s", "alice-run")
        late: list[RunEvent] = text(owner, "s", "alice-run", 3)  # not flushed yet
        owner.dropped = lambda session_id, base: None  # type: ignore[method-assign]  # missed the news
        await other.drop_session("s")
        await transport(owner).outbox.flush()
        assert await other.replay("s", late[0].seq - 1) == ([], False)
        stored = await other.last_seq("s")
        assert stored > late[-1].seq and (await other.replay("s", stored)) == ([], True)
