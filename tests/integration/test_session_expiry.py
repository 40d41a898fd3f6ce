"""Idle sessions expire after DATAAGENT_SESSION_TIMEOUT; never while a run is active."""

from __future__ import annotations

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.servers import live_server, make_settings

pytestmark = pytest.mark.integration


async def test_an_idle_session_is_removed_with_its_messages_and_then_404() -> None:
    settings = make_settings(session_timeout=0.4, expiry_interval=0.1)
    async with live_server(settings) as srv, srv.client() as c:
        await c.post("/api/v1/chat", json={"message": "hi", "session_id": "idle"})
        assert (await c.get("/api/v1/sessions/idle")).status_code == 200

        async def gone() -> httpx.Response | None:
            r = await c.get("/api/v1/sessions/idle")
            return r if r.status_code == 404 else None

        r = await eventually(gone, timeout=5, interval=0.05, what="the idle session's expiry")
        assert r.json()["error_code"] == "session_not_found"
        assert (await c.get("/api/v1/sessions/idle/messages")).status_code == 404
        assert (await c.get("/api/v1/sessions")).json()["total"] == 0


async def test_a_session_with_a_running_answer_is_never_expired() -> None:
    settings = make_settings(session_timeout=0.3, expiry_interval=0.05, demo_chunks=60, demo_chunk_delay_ms=20)
    async with live_server(settings) as srv, srv.client() as c:
        body = (await c.post("/api/v1/chat", json={"message": "long", "session_id": "busy"})).json()
        assert body["status"] == "completed"
        history = (await c.get("/api/v1/sessions/busy/messages")).json()
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
