"""The Redis run broker's edge cases, with several brokers (as several processes would hold) in one test."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from dataagent.adapters.redis.client import close_client, make_client
from dataagent.adapters.redis.transport import RedisTransport, redis_hub
from dataagent.application.hub import EventHub
from dataagent.application.streams import Subscription
from dataagent.domain.events import RunEvent
from tests.services import REDIS_HOST, REDIS_PORT, redis_url, require_service

pytestmark = [pytest.mark.integration, pytest.mark.redis]

URL = redis_url()  # shared: each test has its own key prefix, and deletes only its keys


async def delete_keys(admin: aioredis.Redis, prefix: str) -> None:
    keys = [key async for key in admin.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await admin.delete(*keys)


@contextlib.asynccontextmanager
async def brokers(n: int, max_connections: int = 100, **options: Any) -> AsyncIterator[list[EventHub]]:
    """`n` hubs over Redis transports of their own, as `n` processes would hold; `transport(hub)` reaches under."""
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    admin = aioredis.Redis.from_url(URL)
    prefix = f"test-{secrets.token_hex(4)}:"
    transports = [RedisTransport(make_client(URL, max_connections), prefix=prefix, **options) for _ in range(n)]
    started = [redis_hub(t) for t in transports]
    TRANSPORTS.update((id(hub), t) for hub, t in zip(started, transports, strict=True))
    try:
        for broker in started:
            await broker.start()
        yield started
    finally:
        for broker, t in zip(started, transports, strict=True):
            await broker.close()
            await close_client(t.link.redis)
            TRANSPORTS.pop(id(broker), None)
        await delete_keys(admin, prefix)
        await admin.aclose()


TRANSPORTS: dict[int, RedisTransport] = {}


def transport(hub: EventHub) -> RedisTransport:
    return TRANSPORTS[id(hub)]


def text(broker: EventHub, sid: str, run_id: str, n: int) -> list[RunEvent]:
    return [broker.publish(sid, run_id, "text", {"content": f"{i} ", "is_final": False}) for i in range(n)]


async def drain(subscription: Subscription, until_seq: int, timeout: float = 5) -> list[RunEvent]:
    out = list(subscription.replayed)
    async with asyncio.timeout(timeout):
        while not out or out[-1].seq < until_seq:
            out += [e for e in await subscription.get_batch() if isinstance(e, RunEvent)]
    return out


async def test_a_late_subscriber_where_others_already_watch_gets_each_event_once() -> None:
    async with brokers(2) as (owner, watcher):
        early = await watcher.subscribe("s", None, 1000)
        assert await owner.claim_run("s", "r1")
        owner.publish("s", "r1", "run_started", {"run_id": "r1", "message_id": "m"})
        events = text(owner, "s", "r1", 50)
        await asyncio.sleep(0.05)
        late = await watcher.subscribe("s", None, 1000)  # joins mid-run: the run's events from its start
        events += text(owner, "s", "r1", 50)
        last = events[-1].seq
        for subscription in (early, late):
            seqs = [e.seq for e in await drain(subscription, last)]
            assert seqs == list(range(seqs[0], last + 1)) and seqs[0] == events[0].seq - 1


async def test_the_next_run_on_another_process_numbers_on_from_the_last_runs_done() -> None:
    async with brokers(2) as (a, b):
        assert await a.claim_run("s", "r1")
        first = text(a, "s", "r1", 5)
        await a.release_run("s", "r1", ("done", {"run_id": "r1"}))  # nobody watches anywhere
        assert await b.claim_run("s", "r2")
        second = b.publish("s", "r2", "run_started", {"run_id": "r2"})
        held, complete = await b.replay("s", first[0].seq - 1)
        assert complete and [e.seq for e in held] == list(range(first[0].seq, second.seq + 1))
        assert [e.event_type for e in held][-2:] == ["done", "run_started"]


async def test_a_batch_the_stream_has_moved_past_is_dropped_and_other_sessions_keep_flowing() -> None:
    async with brokers(1) as (broker,):
        assert await broker.claim_run("s", "r1") and await broker.claim_run("t", "r2")
        link = transport(broker).link
        await link.call(link.redis.xadd(link.k("ev", "s"), {"o": "x", "e": "[]"}, id=f"{2**62}-0"))
        stale = text(broker, "s", "r1", 3)  # below the stream's top: Redis refuses the batch
        fine = text(broker, "t", "r2", 3)
        await transport(broker).outbox.flush()
        assert not transport(broker).outbox.last("s")  # not re-queued forever
        held, complete = await broker.replay("t", fine[0].seq - 1)
        assert complete and [e.seq for e in held] == [e.seq for e in fine]
        assert (await broker.replay("s", stale[0].seq - 1))[0] == []


async def test_an_owner_takes_its_claim_back_after_redis_lost_its_data_and_the_sweeper_spares_its_runs() -> None:
    async with brokers(2, lease_s=1) as (owner, other):
        assert await owner.claim_run("s", "r1")
        link = transport(owner).link
        await delete_keys(link.redis, link.k(""))  # Redis restarted empty, without its scripts either
        transport(owner).outbox.sha = "0" * 40  # (a script unknown to Redis: SCRIPT FLUSH would hit every user)
        assert await other.active_run("s") is None
        events = text(owner, "s", "r1", 3)
        await transport(owner).outbox.flush()
        held, _ = await other.replay("s", events[0].seq - 1)
        assert [e.seq for e in held] == [e.seq for e in events]
        await owner.renew_runs({("s", "r1"): {"text": "so far"}})
        assert await other.active_run("s") == "r1" and not await other.claim_run("s", "r2")
        # its lease lapses unrenewed: the other process closes it, the owner's own sweeper never does
        closed: dict[str, list[tuple[str, str]]] = {"owner": [], "other": []}
        for name, broker in (("owner", owner), ("other", other)):
            async def close(session_id: str, run_id: str, name: str = name) -> None:
                closed[name].append((session_id, run_id))

            broker.on_orphan(close)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            while not closed["other"]:
                await asyncio.sleep(0.05)
        assert closed == {"owner": [], "other": [("s", "r1")]} and await other.active_run("s") is None
        # a claim released by the closer is not taken back by a late renewal
        await owner.renew_runs({("s", "r1"): {"text": "more"}})
        assert await other.active_run("s") is None and await other.claim_run("s", "r2")


async def test_a_burst_of_calls_beyond_the_pool_waits_for_connections_instead_of_failing() -> None:
    """Hundreds of sockets asking at once: with redis-py's default pool the calls past its size failed at once
    (MaxConnectionsError, a refused question); the broker's pool makes them wait for a free connection."""
    async with brokers(1, max_connections=4) as (broker,):
        claims = await asyncio.gather(*(broker.claim_run(f"s{i}", f"run_{i}") for i in range(200)))
        assert all(claims)
        assert await asyncio.gather(*(broker.active_run(f"s{i}") for i in range(200))) == [
            f"run_{i}" for i in range(200)]
        for i in range(200):
            await broker.release_run(f"s{i}", f"run_{i}")
