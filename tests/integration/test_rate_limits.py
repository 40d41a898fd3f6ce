"""Per-key limits on one server (the in-memory counts): DATAAGENT_RATE_LIMIT and DATAAGENT_MAX_RUNS_PER_KEY over
REST, server-sent events and WebSocket (rate_scenarios.py; the same scenarios on two processes sharing Redis in
test_rate_limits_scale_out.py)."""

from __future__ import annotations

import pytest

from dataagent.adapters.ratelimit.window import MovingWindowRate, redis_storage
from dataagent.adapters.redis.client import close_client, make_client
from dataagent.adapters.redis.slots import RedisRunSlots
from dataagent.domain.errors import BrokerUnavailableError
from tests.integration.rate_scenarios import (
    a_second_answer_is_refused_until_the_first_ends,
    ask_rest,
    questions_past_the_rate_are_refused_until_the_window_resets,
)
from tests.support import free_port, live_server, make_settings

pytestmark = [pytest.mark.integration]


async def test_questions_past_the_rate_are_refused_429_and_admitted_again_after_the_window() -> None:
    async with live_server(make_settings(rate_limit="3/2second")) as srv:
        await questions_past_the_rate_are_refused_until_the_window_resets([srv], "rate")


async def test_a_key_at_its_running_answers_is_refused_until_one_ends() -> None:
    settings = make_settings(max_runs_per_key=1, demo_chunks=200, demo_chunk_delay_ms=20)
    async with live_server(settings) as srv:
        await a_second_answer_is_refused_until_the_first_ends([srv], "runs")


async def test_without_limits_nothing_is_refused() -> None:
    async with live_server(make_settings()) as srv:
        for n in range(8):
            r = await ask_rest(srv, f"free-{n}", wait=False)
            assert r.status_code == 202 and "RateLimit-Limit" not in r.headers


async def test_a_retry_with_the_same_idempotency_key_is_not_a_new_question() -> None:
    async with live_server(make_settings(rate_limit="1/minute")) as srv, srv.client() as c:
        body = {"message": "hi", "session_id": "idem"}
        first = await c.post("/api/v1/chat", json=body, headers={"Idempotency-Key": "k1"})
        retry = await c.post("/api/v1/chat", json=body, headers={"Idempotency-Key": "k1"})
        assert first.status_code == retry.status_code == 200, retry.text
        assert retry.json()["run_id"] == first.json()["run_id"]
        refused = await c.post("/api/v1/chat", json=body, headers={"Idempotency-Key": "k2"})
        assert refused.status_code == 429 and refused.json()["details"]["kind"] == "questions"


async def test_a_redis_that_cannot_be_reached_makes_the_count_a_broker_unavailable_error() -> None:
    client = make_client(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        with pytest.raises(BrokerUnavailableError):
            await MovingWindowRate(redis_storage(client, "x:"), "1/second").hit("alice")
        with pytest.raises(BrokerUnavailableError):
            await RedisRunSlots(client, 1).acquire("alice", "run-1")
    finally:
        await close_client(client)


async def test_a_browser_on_another_origin_may_read_the_rate_limit_headers() -> None:
    async with live_server(make_settings(rate_limit="1/minute")) as srv, srv.client() as c:
        assert (await c.post("/api/v1/chat", json={"message": "hi"})).status_code == 200
        refused = await c.post("/api/v1/chat", json={"message": "hi"}, headers={"Origin": "https://app.example"})
        assert refused.status_code == 429
        exposed = {h.strip().lower() for h in refused.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= exposed
