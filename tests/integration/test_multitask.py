"""Double-texting (PROTOCOL.md, multitask_strategy): reject, enqueue and interrupt over REST and WebSocket."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import live_server, make_settings, ws_connect
from tests.support.polling import eventually, wait_for_active_run

pytestmark = pytest.mark.integration

SLOW = make_settings(demo_chunks=60, demo_chunk_delay_ms=5)


async def history(c: httpx.AsyncClient, sid: str) -> list[tuple[str, str]]:
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return [(m["role"], m["status"]) for m in messages]


async def questions(c: httpx.AsyncClient, sid: str) -> list[str]:
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_enqueue_over_rest_runs_the_second_question_after_the_first_with_a_queued_event() -> None:
    async with live_server(SLOW) as srv, srv.client() as c:
        first = (await c.post("/api/v1/chat", json={"message": "one", "session_id": "q1", "wait": False})).json()
        await wait_for_active_run(c, "q1")
        r = await c.post("/api/v1/chat", json={"message": "two", "session_id": "q1", "multitask_strategy": "enqueue"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["run_id"] != first["run_id"] and body["status"] == "completed"
        kinds = [e["event_type"] for e in body["events"]]
        assert kinds[0] == "queued" and body["events"][0]["data"]["position"] == 1
        assert kinds.count("run_started") == 1 and kinds[-1] == "done"
        assert await questions(c, "q1") == ["one", "two"]
        assert await history(c, "q1") == [("user", "completed"), ("assistant", "completed")] * 2


async def test_past_the_queue_bound_is_409_queue_full_and_reject_stays_409_run_in_progress() -> None:
    settings = make_settings(demo_chunks=400, demo_chunk_delay_ms=10, max_queued_per_session=1)
    async with live_server(settings) as srv, srv.client() as c:
        await c.post("/api/v1/chat", json={"message": "one", "session_id": "q2", "wait": False})
        await wait_for_active_run(c, "q2")
        queued = await c.post("/api/v1/chat", json={"message": "two", "session_id": "q2", "wait": False,
                                                    "multitask_strategy": "enqueue"})
        assert queued.status_code == 202
        full = await c.post("/api/v1/chat", json={"message": "three", "session_id": "q2", "wait": False,
                                                  "multitask_strategy": "enqueue"})
        assert full.status_code == 409 and full.json()["error_code"] == "queue_full"
        rejected = await c.post("/api/v1/chat", json={"message": "four", "session_id": "q2"})
        assert rejected.status_code == 409 and rejected.json()["error_code"] == "run_in_progress"
        assert (await c.delete("/api/v1/sessions/q2")).status_code in (200, 204)  # its queue goes with it


async def test_interrupt_over_rest_cancels_the_answer_keeping_its_partial_then_runs_the_new_question() -> None:
    async with live_server(make_settings(demo_chunks=400, demo_chunk_delay_ms=10)) as srv, srv.client() as c:
        await c.post("/api/v1/chat", json={"message": "one", "session_id": "q3", "wait": False})
        await wait_for_active_run(c, "q3")
        r = await c.post("/api/v1/chat", json={"message": "two", "session_id": "q3",
                                               "multitask_strategy": "interrupt", "wait": False})
        assert r.status_code == 202, r.text
        await eventually(lambda: _ended(c, "q3", 4), 30.0, what="both answers stored")
        assert await questions(c, "q3") == ["one", "two"]
        statuses = await history(c, "q3")
        assert statuses[1] == ("assistant", "cancelled") and statuses[3][0] == "assistant"


async def _ended(c: httpx.AsyncClient, sid: str, count: int) -> bool:
    info = (await c.get(f"/api/v1/sessions/{sid}")).json()
    return bool(info["message_count"] == count and info["active_run_id"] is None)


async def test_enqueue_and_interrupt_over_websocket() -> None:
    async with live_server(SLOW) as srv, srv.client() as c, ws_connect(srv, "q4") as ws:
        await ws.recv()  # connected
        await ws.send("chat", message="one")
        await ws.until("run_started")
        await ws.send("chat", message="two", multitask_strategy="enqueue")
        frames = await ws.until("queued")
        await ws.send("chat", message="three", multitask_strategy="interrupt")
        async with asyncio.timeout(30):
            while [f["event_type"] for f in ws.frames].count("done") < 3:
                frames.append(await ws.recv())
        dones = [f["data"] for f in ws.frames if f["event_type"] == "done"]
        assert dones[0]["status"] == "cancelled" and len(dones) == 3
        # the interrupting question goes first, then the one queued before it
        assert await questions(c, "q4") == ["one", "three", "two"]
