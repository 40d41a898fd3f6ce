"""A dropped session (deleted or expired) leaves nothing to the next life of its id: the in-process broker."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataagent.adapters.memory.broker import InMemoryRunBroker
from dataagent.application.streams import Subscription
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import RunEvent


def publish(broker: InMemoryRunBroker, sid: str, run_id: str, n: int) -> list[RunEvent]:
    return [broker.publish(sid, run_id, "text", {"content": f"{run_id} {i}", "is_final": False}) for i in range(n)]


async def test_a_subscriber_gets_what_was_queued_and_then_session_not_found() -> None:
    broker = InMemoryRunBroker()
    subscription = await broker.subscribe("s", None, 100)
    sent = publish(broker, "s", "alice-run", 3)
    await broker.drop_session("s")
    publish(broker, "s", "bob-run", 2)  # the id's next life: not delivered to the old subscriber
    assert await subscription.get_batch() == sent
    with pytest.raises(SessionNotFoundError):
        await subscription.get_batch()


async def test_a_waiting_subscriber_is_woken_by_the_drop() -> None:
    broker = InMemoryRunBroker()
    subscription = await broker.subscribe("s", None, 100)
    waiting = asyncio.create_task(subscription.get_batch())
    await asyncio.sleep(0)  # kept: one loop pass, and the reader waits (no time passes)
    await broker.drop_session("s")
    with pytest.raises(SessionNotFoundError):
        await asyncio.wait_for(waiting, 1)


async def test_a_run_that_outlives_the_drop_keeps_its_claim_but_its_held_events_go() -> None:
    broker = InMemoryRunBroker()
    assert await broker.claim_run("s", "slow-run")
    old = publish(broker, "s", "slow-run", 3)
    await broker.drop_session("s")
    assert await broker.active_run("s") == "slow-run" and not await broker.claim_run("s", "bob-run")
    assert await broker.replay("s", old[0].seq - 1) == ([], False)
    assert publish(broker, "s", "slow-run", 1)[0].seq > old[-1].seq + 1


@given(lives=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=6))
def test_each_life_of_an_id_numbers_above_and_apart_from_every_earlier_one_and_replays_only_its_own(
    lives: list[int],
) -> None:
    async def scenario() -> None:
        broker = InMemoryRunBroker()
        last_of_earlier = 0
        for life, count in enumerate(lives):
            start = await broker.last_seq("s")
            assert start > last_of_earlier
            events = publish(broker, "s", f"run-{life}", count)
            if events:
                assert events[0].seq >= last_of_earlier + 2  # a gap: an old after_seq never fits the new life
            for after in range(start - 3 * len(lives) - 35, start + count + 1):
                held, complete = await broker.replay("s", after)
                assert all(e.run_id == f"run-{life}" for e in held), after
                if after < start:
                    assert not complete and held == []  # honest: what came before this life is not held
            last_of_earlier = await broker.last_seq("s")
            await broker.drop_session("s")

    asyncio.run(scenario())


def test_subscription_fail_is_ignored_once_closed() -> None:
    subscription = Subscription([], True, 10)
    subscription.close()
    subscription.fail(SessionNotFoundError())
    with pytest.raises(Exception) as raised:
        asyncio.run(subscription.get_batch())
    assert not isinstance(raised.value, SessionNotFoundError)
