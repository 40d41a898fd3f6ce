"""End to end on the MySQL store: chat over REST and WebSocket, stop the server, start it again, all is there."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.entrypoints.settings import Settings
from tests.contract.helpers import new_session
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, database_url, fresh_database
from tests.support import KEY_B, live_server, make_settings, ws_connect

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

SQL = "SELECT country, COUNT(*) AS n FROM customers GROUP BY country"


def mysql_settings(database: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "session_store": "mysql", "mysql_host": MYSQL_HOST, "mysql_port": MYSQL_PORT, "mysql_database": database,
        "demo_chunks": 40, "demo_chunk_delay_ms": 5,
    }
    return make_settings(**(values | overrides))


async def snapshot(c: httpx.AsyncClient) -> dict[str, Any]:
    """Every session of the caller with its whole history, as the REST API shows them."""
    listing = (await c.get("/api/v1/sessions", params={"limit": 100})).json()
    out: dict[str, Any] = {}
    for info in listing["sessions"]:
        history = (await c.get(f"/api/v1/sessions/{info['session_id']}/messages", params={"limit": 1000})).json()
        out[info["session_id"]] = {"info": info, "messages": history["messages"], "total": history["total"]}
    return out


async def chat_over_everything(srv: Any, c: httpx.AsyncClient) -> str:
    """REST chats (one with metadata, one approved SQL), a WebSocket chat, a cancelled WebSocket answer,
    and an approval left pending; returns the pending approval's interrupt id."""
    first = (await c.post("/api/v1/chat", json={
        "message": "你好 🌏 first question", "session_id": "rest-1", "metadata": {"tab": "a", "标签": ["✓", 1]},
    })).json()
    assert first["status"] == "completed"
    assert (await c.post("/api/v1/chat", json={"message": "second", "session_id": "rest-1"})).json()["status"] == (
        "completed")
    asked = (await c.post("/api/v1/chat", json={"message": SQL, "session_id": "sql-1"})).json()
    assert asked["status"] == "awaiting_approval"
    interrupt_id = asked["events"][-1]["data"]["interrupt_id"]
    approved = (await c.post("/api/v1/chat/sql-1/hitl", json={
        "interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]})).json()
    assert approved["status"] == "completed"
    async with ws_connect(srv, "ws-1") as ws:
        await ws.recv()
        await ws.send("chat", message="over the socket ✨", metadata={"via": "ws"})
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"
        await ws.send("chat", message="a long answer to cancel")
        await ws.until("text")
        await ws.send("cancel")
        done = (await ws.until("done"))[-1]["data"]
        assert done["status"] == "cancelled" and done["cancelled"] is True
    pending = (await c.post("/api/v1/chat", json={"message": SQL, "session_id": "sql-pending"})).json()
    assert pending["status"] == "awaiting_approval"
    return str(pending["events"][-1]["data"]["interrupt_id"])


async def test_sessions_messages_statuses_and_metadata_survive_a_restart() -> None:
    async with fresh_database() as db:
        settings = mysql_settings(db)
        async with live_server(settings) as srv, srv.client() as c:
            pending_interrupt = await chat_over_everything(srv, c)
            before = await snapshot(c)
            async with srv.client(KEY_B) as bob:
                assert (await bob.post("/api/v1/chat", json={"message": "bob's", "session_id": "bob-1"})).status_code \
                    == 200
        # the server stopped: the pending approval's run was cancelled and persisted at shutdown

        async with live_server(settings) as srv, srv.client() as c:
            after = await snapshot(c)
            assert set(after) == set(before) == {"rest-1", "sql-1", "ws-1", "sql-pending"}
            for sid in ("rest-1", "sql-1", "ws-1"):
                assert after[sid] == before[sid]
            rest = after["rest-1"]
            assert [m["role"] for m in rest["messages"]] == ["user", "assistant"] * 2
            assert rest["messages"][0]["content"] == "你好 🌏 first question"
            assert rest["messages"][0]["metadata"] == {"tab": "a", "标签": ["✓", 1]}
            assert rest["info"]["message_count"] == 4 and rest["info"]["title"] == "你好 🌏 first question"
            sql = after["sql-1"]["messages"]
            assert [(m["role"], m["status"]) for m in sql] == [
                ("user", "completed"), ("tool", "success"), ("assistant", "completed")]
            assert sql[1]["metadata"]["table"]["columns"] == ["country", "n"]
            assert sql[2]["metadata"]["tool_calls"][0]["tool_name"] == "run_sql"
            ws = after["ws-1"]["messages"]
            assert [(m["role"], m["status"]) for m in ws] == [
                ("user", "completed"), ("assistant", "completed"), ("user", "completed"), ("assistant", "cancelled")]
            assert ws[0]["metadata"] == {"via": "ws"} and ws[3]["metadata"]["reason"] == "user"
            assert 0 < len(ws[3]["content"]) < len(ws[1]["content"]) + 200

            stopped = after["sql-pending"]
            assert stopped["info"]["active_run_id"] is None and stopped["info"]["pending_interrupt"] is None
            assert [(m["role"], m["status"]) for m in stopped["messages"]] == [
                ("user", "completed"), ("assistant", "cancelled")]
            assert stopped["messages"][-1]["metadata"]["reason"] == "shutdown"
            late = await c.post("/api/v1/chat/sql-pending/hitl", json={
                "interrupt_id": pending_interrupt, "decisions": [{"type": "approve"}]})
            assert late.status_code == 409 and late.json()["error_code"] == "decision_conflict"

            async with srv.client(KEY_B) as bob:  # ownership survives too
                assert (await bob.get("/api/v1/sessions/rest-1")).status_code == 404
                assert (await bob.get("/api/v1/sessions")).json()["total"] == 1

            more = (await c.post("/api/v1/chat", json={"message": "third", "session_id": "rest-1"})).json()
            assert more["status"] == "completed"
            history = (await c.get("/api/v1/sessions/rest-1/messages")).json()
            assert history["total"] == 6 and history["messages"][:4] == rest["messages"]
            assert history["messages"][-1]["message_id"] == more["message_id"]


async def test_run_state_left_by_a_crashed_process_is_cleared_at_start_with_the_local_broker() -> None:
    async with fresh_database() as db:
        crashed = MySqlSessionRepository.from_url(database_url(db))
        await crashed.start()
        await crashed.get_or_create_session(new_session("orphan", "alice", when=datetime.now(UTC)))
        await crashed.set_run_state("orphan", active_run_id="run_dead", pending_interrupt={"interrupt_id": "int_x"})
        await crashed.close()  # the process died without ending its run
        async with live_server(mysql_settings(db)) as srv, srv.client() as c:
            info = (await c.get("/api/v1/sessions/orphan")).json()
            assert info["active_run_id"] is None and info["pending_interrupt"] is None
            body = (await c.post("/api/v1/chat", json={"message": "still usable", "session_id": "orphan"})).json()
            assert body["status"] == "completed"
