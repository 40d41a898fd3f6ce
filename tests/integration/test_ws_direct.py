"""The streaming fast path: with uvicorn's default (sans-I/O) protocol, an idle socket's frames are written in
the publisher's own step; with another protocol they all go through the writer. Same frames either way."""

from __future__ import annotations

from typing import Any

import pytest

from dataagent.adapters.http.websocket.connection import Connection
from tests.support import live_server, make_settings, ws_connect
from tests.support.spies import record_results

pytestmark = pytest.mark.integration

STREAM = make_settings(demo_chunks=50, demo_chunk_delay_ms=5)


async def one_answer(srv: Any, session_id: str) -> list[dict[str, Any]]:
    async with ws_connect(srv, session_id) as ws:
        await ws.recv()
        await ws.send("chat", message="hello")
        return await ws.until("done")


def counting_direct_sends(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record each direct attempt's outcome (the method itself is unchanged)."""
    return record_results(monkeypatch, Connection, "_send_now")


async def test_an_idle_socket_on_the_default_protocol_gets_its_frames_in_the_publishers_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = counting_direct_sends(monkeypatch)
    async with live_server(STREAM) as srv:
        frames = await one_answer(srv, "direct1")
    texts = [f for f in frames if f["event_type"] == "text"]
    assert len(texts) == 51 and frames[-1]["event_type"] == "done"
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
    # chunks 5 ms apart reach an idle socket: nearly all of them are written directly
    assert outcomes.count(True) >= 40, outcomes


@pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated")
async def test_another_websocket_protocol_streams_the_same_frames_through_the_writer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = counting_direct_sends(monkeypatch)
    async with live_server(STREAM, ws="websockets") as srv:
        frames = await one_answer(srv, "direct2")
    assert [f["event_type"] for f in frames].count("text") == 51 and frames[-1]["event_type"] == "done"
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
    assert outcomes == []  # not that protocol: never attempted


async def test_with_permessage_deflate_the_direct_frames_are_compressed_like_the_writers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = counting_direct_sends(monkeypatch)
    async with live_server(STREAM, ws_per_message_deflate=True) as srv:
        async with ws_connect(srv, "direct3", compression="deflate") as ws:
            assert ws.conn.response.headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
            await ws.recv()
            await ws.send("chat", message="hello")
            frames = await ws.until("done")
    assert [f["event_type"] for f in frames].count("text") == 51 and frames[-1]["event_type"] == "done"
    assert [f["seq"] for f in frames] == list(range(frames[0]["seq"], frames[0]["seq"] + len(frames)))
    assert "hello" in "".join(f["data"]["content"] for f in frames if f["event_type"] == "text")
    assert outcomes.count(True) >= 40
