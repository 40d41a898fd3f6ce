"""The event hub's contract over every transport: the same tests, one parameter per transport.

Two hubs stand for two processes: over Redis they share the server (one key prefix per test, deleted after);
in memory they share nothing, as a process restarted on the same store would.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.redis.client import close_client, make_client
from dataagent.adapters.redis.transport import RedisTransport, redis_hub
from dataagent.application.hub import EventHub
from dataagent.application.replay import floor_seq
from dataagent.application.streams import Subscription
from dataagent.application.transport import RunControl
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import RunEvent
from tests.services import REDIS_HOST, REDIS_PORT, redis_url, require_service

URL = redis_url()  # shared: each test has its own key prefix
MakeHub = Callable[..., Awaitable[EventHub]]

redis_param = pytest.param("redis", marks=[pytest.mark.redis, pytest.mark.integration])
# leases and a numbering shared between processes are the Redis transport's alone
redis_only = pytest.mark.parametrize("make_hub", [redis_param], indirect=True)


@pytest.fixture(params=["memory", redis_param])
async def make_hub(request: pytest.FixtureRequest) -> AsyncIterator[MakeHub]:
    """Builds started hubs over the parametrised transport; stops them (and deletes the test's keys) after."""
    started: list[tuple[EventHub, Any]] = []
    prefix = f"test-{secrets.token_hex(4)}:"
    if request.param == "redis":
        require_service(REDIS_HOST, REDIS_PORT, "Redis")

    async def make(replay_events: int = 1000, **options: Any) -> EventHub:
        if request.param == "memory":
            hub = in_memory_hub(replay_events=replay_events)
            client = None
        else:
            client = make_client(URL, 20)
            hub = redis_hub(RedisTransport(client, replay_events=replay_events, prefix=prefix, **options))
        await hub.start()
        started.append((hub, client))
        return hub

    yield make
    for hub, client in started:
        await hub.close()
        if client is not None:
            await close_client(client)
    if request.param == "redis":
        admin = aioredis.Redis.from_url(URL)
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


def text(hub: EventHub, sid: str, run_id: str, n: int) -> list[RunEvent]:
    return [hub.publish(sid, run_id, "text", {"content": f"{i} ", "is_final": False}) for i in range(n)]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def drain(subscription: Subscription, until_seq: int, timeout: float = 5.0) -> list[RunEvent]:
    out = list(subscription.replayed)
    async with asyncio.timeout(timeout):
        while not out or out[-1].seq < until_seq:
            out += [e for e in await subscription.get_batch() if isinstance(e, RunEvent)]
    return out


async def test_numbering_is_contiguous_and_increasing_within_a_life(make_hub: MakeHub) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    events = [hub.publish("s", "r1", "run_started", {"run_id": "r1"})] + text(hub, "s", "r1", 20)
    await hub.release_run("s", "r1", ("done", {"run_id": "r1"}))
    assert await hub.claim_run("s", "r2")
    events += text(hub, "s", "r2", 5)
    seqs = [e.seq for e in events]
    assert seqs[-5] == seqs[20] + 2  # r1's `done` between
    assert seqs[:21] == list(range(seqs[0], seqs[0] + 21)) and seqs[-5:] == list(range(seqs[-5], seqs[-5] + 5))
    assert await hub.last_seq("s") == seqs[-1]


@pytest.mark.parametrize("where", ["zero", "before_first", "middle", "last"])
async def test_replay_after_any_held_seq_gives_the_rest_and_says_recovered(make_hub: MakeHub, where: str) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    events = text(hub, "s", "r1", 10)
    after = {"zero": 0, "before_first": events[0].seq - 1, "middle": events[4].seq, "last": events[-1].seq}[where]
    held, recovered = await hub.replay("s", after)
    assert recovered and held == [e for e in events if e.seq > after]


async def test_replay_beyond_the_last_seq_or_from_an_earlier_life_is_not_recovered(make_hub: MakeHub) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    events = text(hub, "s", "r1", 5)
    assert await hub.replay("s", events[-1].seq + 7) == ([], False)
    await hub.release_run("s", "r1")
    await hub.drop_session("s")
    assert await hub.replay("s", events[1].seq) == ([], False)
    assert await hub.replay("s", events[-1].seq) == ([], False)


async def test_a_restarted_process_numbers_above_the_old_one_and_an_old_seq_is_not_recovered(
    make_hub: MakeHub,
) -> None:
    first = await make_hub()
    assert await first.claim_run("s", "r1")
    old = text(first, "s", "r1", 5)
    await first.release_run("s", "r1", ("done", {"run_id": "r1"}))
    await until(lambda: floor_seq() > old[-1].seq + 1)  # a restart takes longer than the millisecond a floor lasts
    second = await make_hub()  # another process (or this one restarted, in memory)
    assert await second.claim_run("s", "r2")
    new = text(second, "s", "r2", 3)
    assert new[0].seq > old[-1].seq + 1
    held, recovered = await second.replay("s", old[2].seq)
    if recovered:  # a shared log still holds the old events: all of them after the seq, then the new ones
        assert [e.seq for e in held] == [e.seq for e in old[3:]] + [held[2].seq] + [e.seq for e in new]
    else:
        assert held == []
    held, recovered = await second.replay("s", 0)
    assert recovered and held[-3:] == new


async def test_eviction_of_held_events_is_signalled_and_zero_then_replays_nothing(make_hub: MakeHub) -> None:
    hub = await make_hub(replay_events=5)
    assert await hub.claim_run("s", "r1")
    events: list[RunEvent] = []
    for _ in range(12):  # one event at a time written: a shared log trims whole batches
        events += text(hub, "s", "r1", 1)
        await hub.replay("s", events[-1].seq)
    assert await hub.replay("s", 0) == ([], False)
    assert await hub.replay("s", events[0].seq) == ([], False)
    assert await hub.replay("s", events[-7].seq) == ([], False)  # the one event after it was evicted
    held, recovered = await hub.replay("s", events[-6].seq)  # the five held follow it: nothing missing
    assert recovered and held == events[-5:]
    held, recovered = await hub.replay("s", events[-4].seq)
    assert recovered and held == events[-3:]


async def test_one_run_per_session_and_a_release_frees_it(make_hub: MakeHub) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    assert not await hub.claim_run("s", "r2") and await hub.active_run("s") == "r1"
    await hub.release_run("s", "r2")  # not the claimant: nothing happens
    assert await hub.active_run("s") == "r1"
    await hub.release_run("s", "r1")
    assert await hub.active_run("s") is None and await hub.claim_run("s", "r2")


async def test_a_subscriber_gets_the_active_runs_events_then_live_ones_and_done_after_the_release(
    make_hub: MakeHub,
) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    started = hub.publish("s", "r1", "run_started", {"run_id": "r1"})
    text(hub, "s", "r1", 3)
    subscription = await hub.subscribe("s", None, 100)
    assert subscription.recovered and subscription.replayed[0] == started
    text(hub, "s", "r1", 2)
    await hub.release_run("s", "r1", ("done", {"run_id": "r1"}))
    seqs = [e.seq for e in await drain(subscription, started.seq + 6)]
    assert seqs == list(range(started.seq, started.seq + 7))
    subscription.close()


async def test_drop_fails_subscribers_empties_the_replay_and_the_next_life_numbers_apart(make_hub: MakeHub) -> None:
    hub = await make_hub()
    assert await hub.claim_run("s", "r1")
    old = text(hub, "s", "r1", 4)
    await hub.release_run("s", "r1", ("done", {"run_id": "r1"}))
    subscription = await hub.subscribe("s", old[-1].seq + 1, 100)
    await hub.drop_session("s")
    with pytest.raises(SessionNotFoundError):
        async with asyncio.timeout(5):
            while True:
                await subscription.get_batch()
    assert await hub.replay("s", old[0].seq) == ([], False)
    assert await hub.claim_run("s", "r2")
    new = text(hub, "s", "r2", 2)
    assert new[0].seq > old[-1].seq + 2
    held, recovered = await hub.replay("s", 0)
    assert recovered and held == new


async def test_control_reaches_the_hub_that_owns_the_run(make_hub: MakeHub, request: pytest.FixtureRequest) -> None:
    owner = await make_hub()
    shared = "redis" in request.node.callspec.id
    sender = await make_hub() if shared else owner
    received: list[RunControl] = []

    async def handler(control: RunControl) -> None:
        received.append(control)

    owner.on_control(handler)
    assert await owner.claim_run("s", "r1")
    await sender.send_control(RunControl("cancel", "s", "r1", "user"))
    await sender.send_control(RunControl("cancel", "s", "other-run", "user"))  # not the active run: dropped
    await until(lambda: bool(received))
    assert received == [RunControl("cancel", "s", "r1", "user")]


async def test_concurrent_publishers_on_several_sessions_deliver_each_in_order_once(
    make_hub: MakeHub, request: pytest.FixtureRequest,
) -> None:
    owner = await make_hub()
    watcher = await make_hub() if "redis" in request.node.callspec.id else owner
    sessions = [f"s{i}" for i in range(6)]
    for sid in sessions:
        assert await owner.claim_run(sid, f"run-{sid}")
    subscriptions = {sid: await watcher.subscribe(sid, await owner.last_seq(sid), 10_000) for sid in sessions}
    published: dict[str, list[int]] = {sid: [] for sid in sessions}

    async def publisher(sid: str) -> None:
        for i in range(60):
            published[sid].append(text(owner, sid, f"run-{sid}", 1)[0].seq)
            if i % 7 == 0:
                await asyncio.sleep(0)

    await asyncio.gather(*(publisher(sid) for sid in sessions))
    for sid in sessions:
        got = [e.seq for e in await drain(subscriptions[sid], published[sid][-1])]
        assert got == published[sid]
        subscriptions[sid].close()


@redis_only
async def test_redis_a_claim_stores_its_floor_so_a_replay_elsewhere_right_after_it_is_recovered(
    make_hub: MakeHub,
) -> None:
    owner, other = await make_hub(), await make_hub()
    assert await owner.claim_run("fresh", "r1")
    last = await owner.last_seq("fresh")  # what a socket on the owner's process is told
    await until(lambda: floor_seq() > last)  # the other process's clock-based floor has moved past it
    assert await other.replay("fresh", last) == ([], True)
    assert await other.replay("fresh", 0) == ([], True)


@redis_only
async def test_redis_an_expired_lease_is_closed_by_one_other_hub_numbering_above_the_dead_owners_events(
    make_hub: MakeHub,
) -> None:
    owner, closer = await make_hub(lease_s=1), await make_hub(lease_s=1)
    closed: list[tuple[str, str]] = []

    async def on_orphan(session_id: str, run_id: str) -> tuple[str, dict[str, Any]]:
        closed.append((session_id, run_id))
        return "done", {"run_id": run_id, "status": "failed"}

    closer.on_orphan(on_orphan)
    assert await owner.claim_run("s", "r1")
    events = text(owner, "s", "r1", 3)
    await owner.replay("s", 0)  # written to the stream
    await owner.close()  # the owner dies: nobody renews its lease
    watcher = await closer.subscribe("s", events[-1].seq, 100)
    await until(lambda: bool(closed), timeout=10)
    done = await drain(watcher, events[-1].seq + 1, timeout=5)
    assert closed == [("s", "r1")] and done[-1].event_type == "done" and done[-1].seq > events[-1].seq
    assert await closer.active_run("s") is None


@pytest.mark.redis
@pytest.mark.integration
async def test_redis_close_right_after_start_returns_promptly() -> None:
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    for _ in range(10):
        client = make_client(URL, 5)
        hub = redis_hub(RedisTransport(client, prefix=f"test-{secrets.token_hex(4)}:"))
        await hub.start()
        async with asyncio.timeout(3):
            await hub.close()
        await close_client(client)
