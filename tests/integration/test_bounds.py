"""Per-principal bounds over REST and WebSocket, on both stores: 429 too_many_sessions, 413 session_full."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dataagent.entrypoints.settings import Settings
from tests.integration.test_mysql_server import mysql_settings
from tests.mysqldb import fresh_database
from tests.support import KEY_B, make_settings, ws_connect

pytestmark = [pytest.mark.integration]

BOUNDS: dict[str, Any] = {"max_sessions_per_principal": 3, "max_session_bytes": 4096, "demo_chunks": 3}
STORES = ["memory", pytest.param("mysql", marks=pytest.mark.mysql)]


@contextlib.asynccontextmanager
async def bounded_settings(store: str) -> AsyncIterator[Settings]:
    if store == "memory":
        yield make_settings(**BOUNDS)
        return
    async with fresh_database() as db:
        yield mysql_settings(db, **BOUNDS)


@pytest.mark.parametrize("store", STORES)
async def test_a_principal_past_its_sessions_is_refused_429_over_rest_and_websocket(store: str) -> None:
    from tests.support import live_server

    async with bounded_settings(store) as settings, live_server(settings) as srv, srv.client() as c:
        for n in range(3):
            assert (await c.post("/api/v1/chat", json={"message": "hi", "session_id": f"s{n}"})).status_code == 200
        refused = await c.post("/api/v1/chat", json={"message": "hi", "session_id": "s3"})
        assert refused.status_code == 429 and refused.json()["error_code"] == "too_many_sessions", refused.text
        assert refused.json()["details"] == {"max_sessions": 3}
        async with ws_connect(srv, "ws-new") as ws:
            await ws.recv()
            await ws.send("chat", message="hi over the socket")
            error = await ws.recv()
            assert error["event_type"] == "error" and error["data"]["error_code"] == "too_many_sessions"
        listing = (await c.get("/api/v1/sessions")).json()
        assert listing["total"] == 3 and {s["session_id"] for s in listing["sessions"]} == {"s0", "s1", "s2"}
        async with srv.client(KEY_B) as bob:  # per principal
            assert (await bob.post("/api/v1/chat", json={"message": "hi", "session_id": "b0"})).status_code == 200
        assert (await c.post("/api/v1/chat", json={"message": "more", "session_id": "s1"})).status_code == 200
        assert (await c.delete("/api/v1/sessions/s0")).status_code == 204
        assert (await c.post("/api/v1/chat", json={"message": "hi", "session_id": "s3"})).status_code == 200


@pytest.mark.parametrize("store", STORES)
async def test_a_full_session_refuses_new_questions_413_but_keeps_its_answers(store: str) -> None:
    from tests.support import live_server

    async with bounded_settings(store) as settings, live_server(settings) as srv, srv.client() as c:
        codes = []
        for n in range(12):  # 12 x 600 bytes of questions alone pass 4096
            r = await c.post("/api/v1/chat", json={"message": f"{n:02d}" + "q" * 598, "session_id": "full"})
            codes.append(r.status_code)
            if r.status_code != 200:
                assert r.status_code == 413 and r.json()["error_code"] == "session_full", r.text
                assert r.json()["details"]["max_session_bytes"] == 4096
                break
        assert codes[-1] == 413 and set(codes[:-1]) == {200}
        history = (await c.get("/api/v1/sessions/full/messages", params={"limit": 100})).json()["messages"]
        assert [m["role"] for m in history] == ["user", "assistant"] * (len(codes) - 1)  # every answer written
        async with ws_connect(srv, "full") as ws:
            await ws.recv()
            await ws.send("chat", message="q" * 600)
            error = await ws.recv()
            assert error["event_type"] == "error" and error["data"]["error_code"] == "session_full", error
        async with ws_connect(srv, "ws-full") as ws:  # a socket that has seen its session: no read before a start
            await ws.recv()
            await ws.send("chat", message="w" * 3900)
            assert (await ws.until("done"))[-1]["data"]["status"] == "completed"
            await ws.send("chat", message="w" * 100)
            error = await ws.recv()
            assert error["event_type"] == "error" and error["data"]["error_code"] == "session_full", error
        after = (await c.get("/api/v1/sessions/full/messages", params={"limit": 100})).json()["messages"]
        assert after == history  # the refused questions were not stored
        assert (await c.post("/api/v1/chat", json={"message": "a new session", "session_id": "fresh"})).json()[
            "status"] == "completed"
