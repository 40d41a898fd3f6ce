"""GET /metrics: answers of every ending, approvals, SQL outcomes, streams and a slow consumer move the counters
and histograms by the right amounts, scraped from a real server and parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dataagent.application.ports import RunContext
from dataagent.domain.events import AgentOutput, TextDelta
from tests.support import (
    KEY_A,
    eventually,
    live_server,
    make_settings,
    raw_ws_handshake,
    send_masked_text,
    wait_for_active_run,
    ws_connect,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of the exposition, by (name, sorted labels)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


async def scrape(c: httpx.AsyncClient) -> Samples:
    r = await c.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def ask(c: httpx.AsyncClient, message: str, sid: str | None = None, **body: Any) -> dict[str, Any]:
    r = await c.post("/api/v1/chat", json={"message": message, "session_id": sid, **body})
    assert r.status_code in (200, 202), r.text
    return dict(r.json())


async def decide(c: httpx.AsyncClient, sid: str, answer: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    interrupt_id = answer["events"][-1]["data"]["interrupt_id"]
    r = await c.post(f"/api/v1/chat/{sid}/hitl", json={"interrupt_id": interrupt_id, "decisions": [decision]})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_metrics_is_404_when_off_401_without_a_key_and_open_when_public() -> None:
    async with live_server(make_settings(metrics=False)) as srv, srv.client() as c:
        assert (await c.get("/metrics")).status_code == 404
    async with live_server(make_settings()) as srv, srv.client(key=None) as anonymous:
        r = await anonymous.get("/metrics")
        assert r.status_code == 401 and r.json()["error_code"] == "unauthorized"
        async with srv.client(key="key-of-nobody-at-all-0000") as stranger:
            assert (await stranger.get("/metrics")).status_code == 401
    async with live_server(make_settings(metrics_public=True)) as srv, srv.client(key=None) as scraper:
        samples = await scrape(scraper)
        assert value(samples, "dataagent_answers_started_total") == 0


async def test_answers_of_each_ending_and_approvals_move_their_counters_and_histograms() -> None:
    async with live_server(make_settings(demo_chunks=5)) as srv, srv.client() as c:
        done = await ask(c, "hello there")
        assert done["status"] == "completed"

        approved = await ask(c, "SELECT * FROM customers", "s-approved")
        assert approved["status"] == "awaiting_approval"
        assert (await decide(c, "s-approved", approved, {"type": "approve"}))["status"] == "completed"

        failing = await ask(c, "SELECT * FROM no_such_table", "s-failing")
        assert (await decide(c, "s-failing", failing, {"type": "approve"}))["status"] == "completed"

        rejected = await ask(c, "SELECT * FROM orders", "s-rejected")
        await decide(c, "s-rejected", rejected, {"type": "reject", "message": "no"})

        waiting = await ask(c, "SELECT 1", "s-cancelled")  # cancelled while it awaits approval
        assert waiting["status"] == "awaiting_approval"
        assert (await c.post("/api/v1/chat/s-cancelled/cancel")).status_code == 200

        m = await scrape(c)
        assert value(m, "dataagent_answers_started_total") == 5
        assert value(m, "dataagent_answers_ended_total", status="completed", reason="") == 4
        assert value(m, "dataagent_answers_ended_total", status="cancelled", reason="user") == 1
        assert value(m, "dataagent_active_runs") == 0
        assert value(m, "dataagent_answer_duration_seconds_count", status="completed") == 4
        assert value(m, "dataagent_answer_duration_seconds_count", status="cancelled") == 1
        assert value(m, "dataagent_time_to_first_token_seconds_count") == 4  # the cancelled one said nothing
        assert value(m, "dataagent_cancel_to_done_seconds_count") == 1
        assert value(m, "dataagent_approval_wait_seconds_count", decision="approve") == 2
        assert value(m, "dataagent_approval_wait_seconds_count", decision="reject") == 1
        assert value(m, "dataagent_approval_wait_seconds_count", decision="cancel") == 1
        assert value(m, "dataagent_sql_statements_total", type="select", outcome="ran") == 1
        assert value(m, "dataagent_sql_statements_total", type="select", outcome="failed") == 1
        assert value(m, "dataagent_sql_statements_total", type="select", outcome="rejected") == 1
        assert value(m, "dataagent_sql_duration_seconds_count", type="select") == 2  # ran and failed
        customers = approved_rows(await c.get("/api/v1/sessions/s-approved/messages"))
        assert value(m, "dataagent_sql_rows_sum", type="select") == customers
        assert value(m, "dataagent_store_call_duration_seconds_count", operation="append_message") >= 5 * 2
        assert value(m, "dataagent_store_errors_total", operation="append_message") == 0


def approved_rows(r: httpx.Response) -> int:
    tool = next(m for m in r.json()["messages"] if m["role"] == "tool")
    return len(tool["metadata"]["table"]["rows"])


class FailingEngine:
    name = "failing"

    async def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        yield TextDelta("partial ")
        raise RuntimeError("the engine broke")

    async def close(self) -> None:
        return None


async def test_a_failed_answer_is_counted_with_its_reason() -> None:
    async with live_server(engine=FailingEngine()) as srv, srv.client() as c:
        assert (await ask(c, "break"))["status"] == "failed"
        m = await scrape(c)
        assert value(m, "dataagent_answers_ended_total", status="failed", reason="agent_error") == 1
        assert value(m, "dataagent_time_to_first_token_seconds_count") == 1


async def test_socket_and_stream_connections_and_their_frames_are_counted() -> None:
    async with live_server(make_settings(demo_chunks=5)) as srv, srv.client() as c:
        async with ws_connect(srv, "s-ws") as ws:
            await ws.recv()  # connected (sent before streaming starts: not a counted frame)
            await ws.send("chat", message="hello")
            frames = await ws.until("done")
            m = await scrape(c)
            assert value(m, "dataagent_connections_active", transport="ws") == 1
        async with c.stream("POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "s-sse"}) as r:
            events = [line for line in [x async for x in r.aiter_lines()] if line.startswith("event:")]

        async def closed() -> bool:
            m = await scrape(c)
            return value(m, "dataagent_connections_active", transport="ws") == 0

        await eventually(closed, 5, what="the socket's end counted")
        m = await scrape(c)
        assert value(m, "dataagent_connections_opened_total", transport="ws") == 1
        assert value(m, "dataagent_connections_opened_total", transport="sse") == 1
        assert value(m, "dataagent_connections_active", transport="sse") == 0
        assert value(m, "dataagent_frames_sent_total", transport="ws") == len(frames)
        assert value(m, "dataagent_frames_sent_total", transport="sse") == len(events)


async def test_a_socket_that_never_reads_is_counted_as_a_slow_consumer_close() -> None:
    settings = make_settings(demo_chunks=100_000, demo_chunk_delay_ms=0, ws_send_buffer=16)
    async with live_server(settings) as srv, srv.client() as c:
        port = int(srv.base_url.rsplit(":", 1)[1])
        path = f"/ws/chat/s-slow?api_key={KEY_A}"  # a blocking handshake: off the loop the server runs on
        sock, _ = await asyncio.to_thread(raw_ws_handshake, "127.0.0.1", port, path, 4096)
        try:
            send_masked_text(sock, '{"type": "chat", "payload": {"message": "a very long answer"}}')
            await wait_for_active_run(c, "s-slow")

            async def counted() -> bool:
                m = await scrape(c)
                return value(m, "dataagent_slow_consumer_closes_total", transport="ws") == 1

            await eventually(counted, 30, what="the slow consumer's close counted")
            await c.post("/api/v1/chat/s-slow/cancel")
        finally:
            sock.close()


async def test_questions_refused_as_rate_limited_are_counted_by_transport() -> None:
    async with live_server(make_settings(rate_limit="1/minute")) as srv, srv.client() as c:
        assert (await ask(c, "the one question this minute", "s-rl"))["status"] == "completed"
        assert (await c.post("/api/v1/chat", json={"message": "again", "session_id": "s-rl"})).status_code == 429
        assert (await c.post("/api/v1/chat/stream", json={"message": "again", "session_id": "s-rl"})).status_code \
            == 429
        async with ws_connect(srv, "s-rl") as ws:
            await ws.recv()
            await ws.send("chat", message="again")
            refused = await ws.recv()
            assert refused["data"]["error_code"] == "rate_limited", refused
        m = await scrape(c)
        assert value(m, "dataagent_rate_limited_total", transport="rest") == 1
        assert value(m, "dataagent_rate_limited_total", transport="sse") == 1
        assert value(m, "dataagent_rate_limited_total", transport="ws") == 1
