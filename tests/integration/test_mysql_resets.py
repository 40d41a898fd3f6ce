"""The "accepted then reset" outage: a proxy that accepts MySQL connections and resets them (RST), mid-run."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from dataagent.adapters.mysql.engine import EngineOptions, build_engine, driver_cursor, transaction
from dataagent.domain.errors import StoreUnavailableError
from tests.integration.test_mysql_server import mysql_settings
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, database_url, fresh_database
from tests.support import (
    KEY_A,
    LiveServer,
    ServerProcess,
    cli_command,
    free_port,
    live_server,
    server_env,
    spawn,
    wait_for_active_run,
    wait_for_health,
    wait_healthy,
    ws_connect,
)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

DURING = ("GET /api/v1/sessions", "GET /api/v1/sessions/rst", "GET /api/v1/sessions/rst/messages",
          "POST /api/v1/chat", "POST /api/v1/chat/rst/cancel", "DELETE /api/v1/sessions/rst")


async def during(c: httpx.AsyncClient, line: str) -> httpx.Response:
    method, path = line.split(" ")
    body: dict[str, Any] | None = {"message": "during", "session_id": "rst"} if path == "/api/v1/chat" else None
    return await c.request(method, path, json=body)


async def streamed_answer_when_the_store_resets(
    srv: LiveServer | ServerProcess, proxy: TcpProxy
) -> list[dict[str, Any]]:
    """A WebSocket answer under way when every MySQL connection is reset: the frames up to its `done`."""
    async with ws_connect(srv, "rst") as ws:
        await ws.recv()
        await ws.send("chat", message="streaming when the store resets")
        await ws.until("text")
        proxy.reset()
        frames = await ws.until("done", timeout=30)
        await ws.send("chat", message="during, over the socket")
        refused = await ws.recv()
        assert refused["event_type"] == "error" and refused["data"]["error_code"] == "store_unavailable", refused
        return frames


async def test_a_store_that_accepts_then_resets_gives_503_and_every_run_ends_with_one_done() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        settings = mysql_settings(db, mysql_host="127.0.0.1", mysql_port=proxy.port, demo_chunks=200,
                                  demo_chunk_delay_ms=5, mysql_connect_timeout=2)
        async with live_server(settings) as srv, srv.client() as c:
            assert (await c.post("/api/v1/chat", json={"message": "before", "session_id": "rst"})).json()[
                "status"] == "completed"
            frames = await streamed_answer_when_the_store_resets(srv, proxy)
            kinds = [f["event_type"] for f in frames]
            assert kinds.count("done") == 1 and "error" in kinds and kinds.index("error") < kinds.index("done")
            assert all(f["data"]["error_code"] == "store_unavailable" for f in frames if f["event_type"] == "error")
            assert frames[-1]["data"]["status"] == "failed" and frames[-1]["data"]["message_id"] is None

            for line in DURING:
                r = await during(c, line)
                assert r.status_code == 503 and r.json()["error_code"] == "store_unavailable", (line, r.text)
            health = await wait_for_health(srv, 503)
            assert health["status"] == "degraded" and health["checks"]["store"] == "store_unavailable"
            assert proxy.resets > 0

            proxy.restore()
            await wait_for_health(srv, 200)
            after = await c.post("/api/v1/chat", json={"message": "after", "session_id": "rst"})
            assert after.status_code == 200 and after.json()["status"] == "completed", after.text


async def test_after_a_reset_outage_cancel_and_delete_act_on_the_session_again() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        settings = mysql_settings(db, mysql_host="127.0.0.1", mysql_port=proxy.port, demo_chunks=400,
                                  demo_chunk_delay_ms=5, mysql_connect_timeout=2)
        async with live_server(settings) as srv, srv.client() as c:
            await streamed_answer_when_the_store_resets(srv, proxy)
            proxy.restore()
            await wait_for_health(srv, 200)
            assert (await c.post("/api/v1/chat/rst/cancel")).json()["error_code"] == "no_active_run"
            async with ws_connect(srv, "rst") as ws:
                await ws.recv()
                await ws.send("chat", message="a long one, to cancel")
                run_id = await wait_for_active_run(c, "rst")
                assert (await c.post("/api/v1/chat/rst/cancel")).status_code == 200
                done = (await ws.until("done", timeout=20))[-1]["data"]
                assert done["run_id"] == run_id and done["status"] == "cancelled"
            assert (await c.delete("/api/v1/sessions/rst")).status_code == 204
            assert (await c.get("/api/v1/sessions/rst")).status_code == 404
            again = await c.post("/api/v1/chat", json={"message": "a new start", "session_id": "rst"})
            assert again.status_code == 200 and again.json()["status"] == "completed", again.text


async def test_a_bug_inside_a_store_transaction_is_not_hidden_as_store_unavailable() -> None:
    async with fresh_database() as db:
        engine = build_engine(database_url(db), EngineOptions())

        async def buggy(conn: AsyncConnection, attempt: int) -> None:
            await conn.execute(text("SELECT 1"))
            raise IndexError("a bug of ours, after a query")

        async def bad_parameter(conn: AsyncConnection, attempt: int) -> None:
            await (await driver_cursor(conn)).execute("SELECT %s, %s", (1,))  # one parameter short

        try:
            with pytest.raises(IndexError):
                await transaction(engine, buggy, "buggy")
            with pytest.raises(Exception) as raised:
                await transaction(engine, bad_parameter, "bad_parameter")
            assert not isinstance(raised.value, StoreUnavailableError)
        finally:
            await engine.dispose()


async def test_dataagent_server_on_uvloop_survives_a_store_that_accepts_then_resets() -> None:
    """The same outage under the real command line, whose event loop (uvloop) has transports of its own."""
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        port = free_port()
        env = server_env(SESSION_STORE="mysql", MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(proxy.port),
                         MYSQL_DATABASE=db, MYSQL_CONNECT_TIMEOUT="2", DEMO_CHUNKS="200",
                         DEMO_CHUNK_DELAY_MS="5", API_KEYS=f"alice:{KEY_A}")
        server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)],
                       {k if k == "PYTHONPATH" else f"DATAAGENT_{k}": v for k, v in env.items()}, port)
        try:
            await asyncio.to_thread(wait_healthy, server)
            frames = await streamed_answer_when_the_store_resets(server, proxy)
            assert [f["event_type"] for f in frames].count("done") == 1
            async with server.client() as c:
                for line in DURING:
                    r = await during(c, line)
                    assert r.status_code == 503 and r.json()["error_code"] == "store_unavailable", (line, r.text)
                await wait_for_health(server, 503)
                proxy.restore()
                await wait_for_health(server, 200)
                after = await c.post("/api/v1/chat", json={"message": "after", "session_id": "rst"})
                assert after.status_code == 200 and after.json()["status"] == "completed", after.text
        finally:
            server.stop()
        assert "Traceback" not in server.text(), server.text()
