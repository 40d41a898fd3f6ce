"""POST /chat, cancel and the error envelope, over real HTTP against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.polling import wait_for_active_run, wait_for_text
from tests.support.servers import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration


async def test_chat_answers_and_history_holds_user_then_assistant_message() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "你好，世界 🌏 how many orders?"})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "completed"
        assert "你好，世界 🌏 how many orders?" in body["content"]
        types = [e["event_type"] for e in body["events"]]
        assert types[0] == "run_started" and types[-1] == "done"
        assert types.count("done") == 1
        seqs = [e["seq"] for e in body["events"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert body["events"][-1]["data"]["message_id"] == body["message_id"]

        history = (await c.get(f"/api/v1/sessions/{body['session_id']}/messages")).json()
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
        assert history["messages"][0]["content"] == "你好，世界 🌏 how many orders?"
        assert history["messages"][1]["content"] == body["content"]
        assert history["messages"][1]["status"] == "completed"
        assert history["messages"][1]["message_id"] == body["message_id"]
        assert history["total"] == 2 and history["has_more"] is False


async def test_client_chosen_session_id_creates_the_session_and_is_reused() -> None:
    async with live_server() as srv, srv.client() as c:
        for question in ("first question", "second question"):
            r = await c.post("/api/v1/chat", json={"message": question, "session_id": "my-tab_1"})
            assert r.status_code == 200 and r.json()["session_id"] == "my-tab_1"
        info = (await c.get("/api/v1/sessions/my-tab_1")).json()
        assert info["message_count"] == 4
        assert info["title"] == "first question"
        assert info["user_id"] == "alice"
        assert info["active_run_id"] is None and info["pending_interrupt"] is None


async def test_cancel_from_a_second_client_ends_a_long_sync_chat_with_its_partial_text() -> None:
    settings = make_settings(demo_chunks=400, demo_chunk_delay_ms=10)
    async with live_server(settings) as srv, srv.client() as asker, srv.client() as canceller:
        chat = asyncio.create_task(asker.post("/api/v1/chat", json={"message": "long one", "session_id": "s-c"}))
        await wait_for_text(srv, canceller, "s-c")
        started = time.monotonic()
        r = await canceller.post("/api/v1/chat/s-c/cancel")
        assert r.status_code == 200
        assert r.json()["status"] == "cancelled" and r.json()["session_id"] == "s-c"
        body = (await chat).json()
        assert time.monotonic() - started < 1.0
        assert body["status"] == "cancelled"
        assert body["run_id"] == r.json()["run_id"]
        assert 0 < len(body["content"]) < len(" ".join(f"tok{i}" for i in range(400)))
        done = body["events"][-1]
        assert done["event_type"] == "done" and done["data"]["cancelled"] is True
        history = (await canceller.get("/api/v1/sessions/s-c/messages")).json()["messages"]
        assert history[-1]["role"] == "assistant" and history[-1]["status"] == "cancelled"
        assert history[-1]["content"] == body["content"]
        # the session is free again at once
        assert (await canceller.get("/api/v1/sessions/s-c")).json()["active_run_id"] is None


async def test_second_chat_in_a_busy_session_is_409_and_cancel_with_nothing_running_is_404() -> None:
    settings = make_settings(demo_chunks=200, demo_chunk_delay_ms=10)
    async with live_server(settings) as srv, srv.client() as c, srv.client() as other:
        first = asyncio.create_task(c.post("/api/v1/chat", json={"message": "q", "session_id": "busy"}))
        await wait_for_active_run(other, "busy")
        r = await other.post("/api/v1/chat", json={"message": "again", "session_id": "busy"})
        assert r.status_code == 409 and r.json()["error_code"] == "run_in_progress"
        r = await other.post("/api/v1/chat/busy/cancel", json={"run_id": "run_not_this_one"})
        assert r.status_code == 404 and r.json()["error_code"] == "no_active_run"
        await other.post("/api/v1/chat/busy/cancel")
        await first
        r = await other.post("/api/v1/chat/busy/cancel")
        assert r.status_code == 404 and r.json()["error_code"] == "no_active_run"


async def test_error_envelope_on_unknown_route_validation_and_missing_key() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.get("/api/v1/nope", headers={"X-Request-ID": "trace-123"})
        assert r.status_code == 404
        assert r.json() == {"error_code": "not_found", "message": "Not Found", "request_id": "trace-123"}
        assert r.headers["x-request-id"] == "trace-123"
        r = await c.post("/api/v1/chat", json={"message": ""})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        assert r.json()["request_id"] == r.headers["x-request-id"]
        r = await c.post("/api/v1/chat", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        r = await c.post("/api/v1/chat", json={"message": "x" * 32001})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        r = await c.post("/api/v1/chat", json={"message": "hi", "session_id": "bad id!"})
        assert r.status_code == 422


async def test_request_body_over_the_frame_limit_is_413() -> None:
    async with live_server(make_settings(max_frame_bytes=2048)) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "y" * 5000})
        assert r.status_code == 413
        assert r.json()["error_code"] == "payload_too_large" and r.json()["request_id"]


async def test_every_route_but_health_and_docs_needs_a_key() -> None:
    async with live_server() as srv, srv.client(key=None) as anon:
        for method, path in [
            ("POST", "/api/v1/chat"), ("POST", "/api/v1/chat/s/cancel"), ("POST", "/api/v1/chat/s/hitl"),
            ("GET", "/api/v1/sessions"), ("GET", "/api/v1/sessions/s"), ("DELETE", "/api/v1/sessions/s"),
            ("GET", "/api/v1/sessions/s/messages"),
        ]:
            r = await anon.request(method, path, json={"message": "hi"})
            assert r.status_code == 401, (method, path)
            assert r.json()["error_code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "ApiKey"
        r = await anon.get("/api/v1/sessions", headers={"X-API-Key": "wrong"})
        assert r.status_code == 401
        for path in ("/api/v1/health", "/docs", "/redoc", "/openapi.json"):
            assert (await anon.get(path)).status_code == 200, path
        preflight = await anon.options("/api/v1/chat", headers={
            "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        })
        assert preflight.status_code == 200


async def test_bearer_token_works_like_the_header() -> None:
    async with live_server() as srv, srv.client(key=None) as c:
        r = await c.get("/api/v1/sessions", headers={"Authorization": f"Bearer {KEY_B}"})
        assert r.status_code == 200 and r.json()["sessions"] == []


async def test_auth_disabled_opens_every_route_as_anonymous() -> None:
    async with live_server(make_settings(api_keys=[], auth_disabled=True)) as srv, srv.client(key=None) as c:
        r = await c.post("/api/v1/chat", json={"message": "open"})
        assert r.status_code == 200
        info = (await c.get(f"/api/v1/sessions/{r.json()['session_id']}")).json()
        assert info["user_id"] == "anonymous"



async def test_health_reports_components_and_counts() -> None:
    async with live_server() as srv, srv.client(key=None) as c:
        body = (await c.get("/api/v1/health")).json()
        assert body["status"] == "ok" and body["store"] == "memory" and body["checks"]["store"] == "ok"
        assert body["active_runs"] == 0 and body["connections"] == 0 and body["version"]
