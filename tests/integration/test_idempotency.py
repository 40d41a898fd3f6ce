"""Idempotent requests (PROTOCOL.md, Idempotency-Key): a retry gets the first request's outcome, never a second
run; over real HTTP and WebSocket against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from tests.support import live_server, make_settings, ws_connect
from tests.support.polling import eventually, wait_for_active_run

pytestmark = pytest.mark.integration

SQL = "select name, city from customers order by id limit 5"


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def questions(c: httpx.AsyncClient, sid: str) -> list[str]:
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_the_same_chat_twice_in_sequence_is_one_run_with_the_same_answer() -> None:
    async with live_server() as srv, srv.client() as c:
        body = {"message": "how many orders?", "session_id": "i1"}
        first = await c.post("/api/v1/chat", json=body, headers=key("k-1"))
        again = await c.post("/api/v1/chat", json=body, headers=key("k-1"))
        assert first.status_code == again.status_code == 200, again.text
        assert again.json()["run_id"] == first.json()["run_id"]
        assert again.json()["message_id"] == first.json()["message_id"]
        assert again.json()["content"] == first.json()["content"] and again.json()["status"] == "completed"
        assert await questions(c, "i1") == ["how many orders?"]


async def test_the_same_chat_twice_at_once_is_one_run_and_one_stored_question() -> None:
    async with live_server(make_settings(demo_chunks=30, demo_chunk_delay_ms=5)) as srv, srv.client() as c:
        body = {"message": "at once", "session_id": "i2"}
        a, b = await asyncio.gather(*(c.post("/api/v1/chat", json=body, headers=key("k-2")) for _ in range(2)))
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        assert a.json()["run_id"] == b.json()["run_id"] and a.json()["message_id"] == b.json()["message_id"]
        assert a.json()["content"] == b.json()["content"]
        assert await questions(c, "i2") == ["at once"]


async def test_the_same_key_with_another_body_is_422_idempotency_key_reused() -> None:
    async with live_server() as srv, srv.client() as c, srv.client(key=None) as anon:
        assert (await c.post("/api/v1/chat", json={"message": "one", "session_id": "i3"}, headers=key("k-3"))
                ).status_code == 200
        r = await c.post("/api/v1/chat", json={"message": "two", "session_id": "i3"}, headers=key("k-3"))
        assert r.status_code == 422 and r.json()["error_code"] == "idempotency_key_reused"
        bad = await c.post("/api/v1/chat", json={"message": "x"}, headers=key("has space"))
        assert bad.status_code == 422 and bad.json()["error_code"] == "validation_error"
        assert (await anon.post("/api/v1/chat", json={"message": "x"}, headers=key("k-3"))).status_code == 401
        assert await questions(c, "i3") == ["one"]


async def test_another_principal_with_the_same_key_is_a_request_of_its_own() -> None:
    async with live_server() as srv, srv.client() as alice, srv.client(key="key-bravo-9876543210") as bob:
        a = await alice.post("/api/v1/chat", json={"message": "mine"}, headers=key("shared"))
        b = await bob.post("/api/v1/chat", json={"message": "mine"}, headers=key("shared"))
        assert a.status_code == b.status_code == 200
        assert a.json()["run_id"] != b.json()["run_id"]


async def test_a_retried_background_chat_while_it_runs_names_the_same_run_and_waits_for_it() -> None:
    async with live_server(make_settings(demo_chunks=60, demo_chunk_delay_ms=5)) as srv, srv.client() as c:
        body = {"message": "long", "session_id": "i4"}
        started = await c.post("/api/v1/chat", json={**body, "wait": False}, headers=key("k-4"))
        assert started.status_code == 202
        again = await c.post("/api/v1/chat", json={**body, "wait": False}, headers=key("k-4"))
        assert again.status_code == 202 and again.json()["run_id"] == started.json()["run_id"]
        assert await questions(c, "i4") == ["long"]


async def test_the_same_cancel_twice_cancels_once_and_both_name_the_run() -> None:
    async with live_server(make_settings(demo_chunks=400, demo_chunk_delay_ms=10)) as srv, srv.client() as c:
        run = (await c.post("/api/v1/chat", json={"message": "q", "session_id": "i5", "wait": False})).json()
        await wait_for_active_run(c, "i5")
        a, b = await asyncio.gather(*(c.post("/api/v1/chat/i5/cancel", headers=key("c-1")) for _ in range(2)))
        again = await c.post("/api/v1/chat/i5/cancel", headers=key("c-1"))
        for r in (a, b, again):
            assert r.status_code == 200, r.text
            assert r.json()["run_id"] == run["run_id"]
        other = await c.post("/api/v1/chat/i5/cancel", headers=key("c-2"))  # a new key: nothing runs now
        assert other.status_code == 404 and other.json()["error_code"] == "no_active_run"


async def test_the_same_decision_twice_at_once_and_later_continues_the_run_once() -> None:
    async with live_server() as srv, srv.client() as c:
        asked = (await c.post("/api/v1/chat", json={"message": SQL, "session_id": "i6"})).json()
        interrupt_id = asked["events"][-1]["data"]["interrupt_id"]
        decision = {"interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]}
        a, b = await asyncio.gather(*(c.post("/api/v1/chat/i6/hitl", json=decision, headers=key("h-1"))
                                      for _ in range(2)))
        later = await c.post("/api/v1/chat/i6/hitl", json=decision, headers=key("h-1"))
        for r in (a, b, later):
            assert r.status_code == 200, r.text
            assert r.json()["run_id"] == asked["run_id"] and r.json()["status"] == "completed"
            assert r.json()["message_id"] == a.json()["message_id"]
        assert later.json()["content"] == a.json()["content"]
        messages = (await c.get("/api/v1/sessions/i6/messages")).json()["messages"]
        assert [m["role"] for m in messages].count("assistant") == 1
        reuse = await c.post("/api/v1/chat/i6/hitl", json={**decision, "decisions": [{"type": "reject"}]},
                             headers=key("h-1"))
        assert reuse.status_code == 422 and reuse.json()["error_code"] == "idempotency_key_reused"


async def stream(c: httpx.AsyncClient, body: dict[str, Any], idem: str) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json=body, headers=key(idem)) as es:
        assert es.response.status_code == 200
        async for event in es.aiter_sse():
            frames.append(json.loads(event.data))
    return frames


async def test_the_same_stream_twice_at_once_and_later_follows_one_run() -> None:
    async with live_server(make_settings(demo_chunks=30, demo_chunk_delay_ms=5)) as srv, srv.client() as c:
        body = {"message": "stream me", "session_id": "i7"}
        a, b = await asyncio.gather(stream(c, body, "s-1"), stream(c, body, "s-1"))
        later = await stream(c, body, "s-1")
        for frames in (a, b, later):
            done = [f for f in frames if f["event_type"] == "done"]
            assert len(done) == 1 and done[0]["run_id"] == a[-1]["run_id"]
            assert done[0]["data"]["message_id"] == a[-1]["data"]["message_id"]
        # the racing retry followed the run itself; the later one gets its `done` naming the stored answer
        assert "".join(f["data"]["content"] for f in b if f["event_type"] == "text") == \
            "".join(f["data"]["content"] for f in a if f["event_type"] == "text")
        assert await questions(c, "i7") == ["stream me"]


async def test_the_same_chat_frame_twice_on_a_socket_starts_one_run() -> None:
    async with live_server(make_settings(demo_chunks=30, demo_chunk_delay_ms=5)) as srv, srv.client() as c:
        async with ws_connect(srv, "i8") as ws:
            await ws.recv()  # connected
            await asyncio.gather(*(ws.send("chat", message="over ws", client_message_id="m-1") for _ in range(2)))
            frames = await ws.until("done")
            await ws.send("chat", message="over ws", client_message_id="m-1")  # a retry after the end
            await ws.send("chat", message="other", client_message_id="m-1")
            error = await ws.until("error")
        assert [f["event_type"] for f in frames].count("run_started") == 1
        assert error[-1]["data"]["error_code"] == "idempotency_key_reused"
        assert [f["event_type"] for f in error].count("run_started") == 0
        assert await eventually(lambda: questions(c, "i8"), 5.0, what="the question stored") == ["over ws"]
