"""kill -9 of a single server on the MySQL store (local broker) mid-answer: after the restart the session shows
the interrupted answer as `failed` (reason `interrupted`) and is free (issue 17, item 11)."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from tests.integration.test_cli import child_env
from tests.integration.test_scale_out import start_server
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.support import KEY_A, ServerProcess, wait_healthy, ws_connect

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


def mysql_env(database: str, **extra: str) -> dict[str, str]:
    return child_env(
        SESSION_STORE="mysql", MYSQL_HOST=MYSQL_HOST, MYSQL_PORT=str(MYSQL_PORT), MYSQL_DATABASE=database,
        API_KEYS=f"alice:{KEY_A}", LOG_LEVEL="warning", **extra,
    )


async def messages(server: ServerProcess, sid: str) -> list[dict[str, Any]]:
    async with server.client() as c:
        r = await c.get(f"/api/v1/sessions/{sid}/messages", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["messages"])


async def session(server: ServerProcess, sid: str) -> dict[str, Any]:
    async with server.client() as c:
        return dict((await c.get(f"/api/v1/sessions/{sid}")).json())


async def test_after_kill_9_mid_answer_the_restarted_server_shows_it_failed_as_interrupted() -> None:
    async with fresh_database("dataagent_kill") as database:
        slow = start_server(mysql_env(database, DEMO_CHUNKS="1000", DEMO_CHUNK_DELAY_MS="10"))
        try:
            wait_healthy(slow)
            async with ws_connect(slow, "cut") as ws:
                await ws.recv()
                await ws.send("chat", message="a long answer, cut short")
                frames = [await ws.recv() for _ in range(6)]
                run_id = frames[0]["data"]["run_id"]
                slow.stop(signal.SIGKILL)
        finally:
            slow.stop(signal.SIGKILL)
        server = start_server(mysql_env(database, DEMO_CHUNKS="3", DEMO_CHUNK_DELAY_MS="1"))
        try:
            wait_healthy(server)
            history = await messages(server, "cut")
            assert [(m["role"], m["status"]) for m in history] == [("user", "completed"), ("assistant", "failed")]
            answer = history[-1]
            assert answer["run_id"] == run_id and answer["metadata"]["reason"] == "interrupted", answer
            assert answer["metadata"]["error"]["error_code"] == "interrupted"
            assert answer["content"] == ""  # nothing of the text was stored before the kill
            assert (await session(server, "cut"))["active_run_id"] is None
            async with server.client() as c:  # the session is free: a new question is answered
                r = await c.post("/api/v1/chat", json={"message": "again", "session_id": "cut"})
                assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        finally:
            server.stop()
        again = start_server(mysql_env(database))  # a second restart stores nothing more
        try:
            wait_healthy(again)
            statuses = [m["status"] for m in await messages(again, "cut")]
            assert statuses == ["completed", "failed", "completed", "completed"]
        finally:
            again.stop()
