"""The event stream's fast path (event_stream.py): with uvicorn's httptools protocol, an idle stream's events are
written in the publisher's own step; with h11 every chunk goes through the stream's task. Same events either way,
and a client that goes away ends its stream at once (its run goes on)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from dataagent.adapters.http.event_stream import EventStream
from tests.integration.test_sse import read_until, stalled_stream
from tests.support import live_server, make_settings, wait_for_active_run, wait_for_connections
from tests.support.frames import assert_contiguous, kinds, stored_answer, text_of
from tests.support.spies import record_results

pytestmark = pytest.mark.integration

STREAM = make_settings(demo_chunks=50, demo_chunk_delay_ms=5)


def counting_direct_sends(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record each direct attempt's outcome (the method itself is unchanged)."""
    return record_results(monkeypatch, EventStream, "_send_now")


async def one_streamed_answer(srv: Any, session_id: str) -> list[dict[str, Any]]:
    async with srv.client() as c, aconnect_sse(
            c, "POST", "/api/v1/chat/stream", json={"message": "hello", "session_id": session_id}) as es:
        frames = [json.loads(e.data) for e in [e async for e in es.aiter_sse()]]
        stored = await stored_answer(c, session_id)
    assert kinds(frames)[0] == "run_started" and kinds(frames)[-1] == "done" and kinds(frames).count("text") == 51
    assert_contiguous(frames)
    assert stored["content"] == text_of(frames) != ""
    return frames


async def test_an_idle_stream_on_httptools_gets_its_events_in_the_publishers_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = counting_direct_sends(monkeypatch)
    async with live_server(STREAM, http="httptools") as srv:
        await one_streamed_answer(srv, "direct1")
    # chunks 5 ms apart reach an idle stream: nearly all of them are written directly
    assert outcomes.count(True) >= 40, outcomes


async def test_on_h11_the_same_events_go_through_the_streams_task(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = counting_direct_sends(monkeypatch)
    async with live_server(STREAM, http="h11") as srv:
        await one_streamed_answer(srv, "direct2")
    assert outcomes == []  # not that protocol: never attempted


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_a_client_that_goes_away_mid_stream_frees_its_slot_at_once_and_the_run_goes_on(http: str) -> None:
    settings = make_settings(demo_chunks=100_000, demo_chunk_delay_ms=1)
    async with live_server(settings, http=http) as srv, srv.client() as c:
        with stalled_stream(srv, "gone") as sock:  # read here up to the run's start (the head may come alone)
            assert b"event: run_started" in await asyncio.to_thread(read_until, sock, b"event: run_started")
        assert await wait_for_connections(srv, 0, timeout=5) == 0  # ended by the disconnect, not by the run's end
        await wait_for_active_run(c, "gone")
        assert (await c.post("/api/v1/chat/gone/cancel")).status_code == 200
