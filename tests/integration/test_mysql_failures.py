"""The MySQL store failing under a running server: killed connections, a cut-off network, a start without it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import websockets

import dataagent
from tests.integration.test_mysql_server import mysql_settings
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database, kill_connections
from tests.support import WsClient, cli_command, free_port, live_server, spawn, wait_for_health, ws_connect
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

SESSIONS = 8
ROUNDS = 3


def assert_history_is_whole(messages: list[dict[str, Any]], answers: dict[str, dict[str, Any]]) -> None:
    """No message twice, one user message per run, at most one assistant message per run, and every
    answer the server reported as stored is there whole."""
    ids = [m["message_id"] for m in messages]
    assert len(ids) == len(set(ids)), "a duplicated message"
    per_run = Counter((m["run_id"], m["role"]) for m in messages)
    assert all(n == 1 for (_, role), n in per_run.items() if role in ("user", "assistant")), per_run
    stored = {m["message_id"]: m for m in messages}
    session_ids = {m["session_id"] for m in messages}
    for body in answers.values():
        if body["message_id"] is not None and body["session_id"] in session_ids:
            assert stored[body["message_id"]]["content"] == body["content"], "a half message"
            assert stored[body["message_id"]]["status"] == body["status"]


async def chat_rounds(c: httpx.AsyncClient, sid: str, answers: dict[str, dict[str, Any]], codes: list[int]) -> None:
    for n in range(ROUNDS):
        r = await c.post("/api/v1/chat", json={"message": f"{sid} question {n}", "session_id": sid})
        codes.append(r.status_code)
        if r.status_code == 200:
            body = r.json()
            assert [e["event_type"] for e in body["events"]].count("done") == 1
            answers[body["run_id"]] = body
        else:
            assert r.status_code == 503 and r.json()["error_code"] == "store_unavailable"


async def test_killing_the_servers_connections_mid_run_loses_nothing_and_duplicates_nothing() -> None:
    async with fresh_database() as db:
        async with live_server(mysql_settings(db, demo_chunks=10, demo_chunk_delay_ms=3)) as srv, srv.client() as c:
            stop, kills = asyncio.Event(), [0]

            async def killer() -> None:
                while not stop.is_set():
                    kills[0] += await kill_connections(db)
                    await asyncio.sleep(0.01)  # kept: the pace of the kills is the scenario

            async def over_websocket() -> list[str]:
                for _ in range(50):  # a socket opening while the store fails is refused with 1013: again
                    with contextlib.suppress(websockets.ConnectionClosed):
                        async with ws_connect(srv, "ws-kill") as ws:
                            if (await ws.recv())["event_type"] == "connected":
                                return await socket_rounds(ws)
                raise AssertionError("no socket could be opened")

            answers: dict[str, dict[str, Any]] = {}
            codes: list[int] = []
            task = asyncio.create_task(killer())
            try:
                socket_kinds, *_ = await asyncio.gather(
                    over_websocket(), *(chat_rounds(c, f"kill-{n}", answers, codes) for n in range(SESSIONS)))
            finally:
                stop.set()
                await task
            assert kills[0] > 0
            assert socket_kinds.count("done") == socket_kinds.count("run_started")
            assert codes.count(200) > 0  # a retry on a fresh connection saves most of them
            for sid in [f"kill-{n}" for n in range(SESSIONS)] + ["ws-kill"]:
                r = await c.get(f"/api/v1/sessions/{sid}/messages", params={"limit": 1000})
                if r.status_code == 404:
                    continue  # its creation never got through
                history = r.json()
                assert history["total"] == len(history["messages"])
                assert_history_is_whole(history["messages"], answers)
            assert (await c.get("/api/v1/health")).json()["status"] == "ok"


async def socket_rounds(ws: WsClient) -> list[str]:
    """ROUNDS questions on one socket; the run_started and done frames seen (a refused chat has neither)."""
    kinds: list[str] = []
    for n in range(ROUNDS):
        await ws.send("chat", message=f"socket question {n}")
        while True:
            frame = await ws.recv(20)
            if frame["event_type"] == "error" and "seq" not in frame:  # refused at its start
                assert frame["data"]["error_code"] == "store_unavailable"
                break
            if frame["event_type"] in ("run_started", "done"):
                kinds.append(frame["event_type"])
            if frame["event_type"] == "done":
                break
    return kinds



async def test_a_cut_off_store_gives_503_degraded_health_and_error_then_done_and_comes_back_by_itself() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        settings = mysql_settings(db, mysql_host="127.0.0.1", mysql_port=proxy.port, demo_chunks=200,
                                  demo_chunk_delay_ms=5, mysql_connect_timeout=2)
        async with live_server(settings) as srv, srv.client() as c:
            before = (await c.post("/api/v1/chat", json={"message": "before", "session_id": "cut"})).json()
            assert before["status"] == "completed"
            async with ws_connect(srv, "cut") as ws:
                await ws.recv()
                await ws.send("chat", message="streaming when the store goes away")
                await ws.until("text")
                proxy.cut()
                frames = await ws.until("done", timeout=20)
                kinds = [f["event_type"] for f in frames]
                assert kinds.count("done") == 1 and kinds.index("error") < kinds.index("done")
                error = frames[kinds.index("error")]["data"]
                assert error["error_code"] == "store_unavailable" and error["recoverable"] is False
                assert frames[-1]["data"]["status"] == "failed" and frames[-1]["data"]["message_id"] is None

                for request in (c.get("/api/v1/sessions"), c.get("/api/v1/sessions/cut/messages"),
                                c.post("/api/v1/chat", json={"message": "during", "session_id": "cut"})):
                    r = await request
                    assert r.status_code == 503 and r.json()["error_code"] == "store_unavailable"
                    assert r.headers["Retry-After"]
                health = await wait_for_health(srv, 503)
                assert health["status"] == "degraded" and health["checks"]["store"] != "ok"
                await ws.send("chat", message="during, over the socket")
                refused = await ws.recv()
                assert refused["event_type"] == "error" and refused["data"]["error_code"] == "store_unavailable"
                async with ws_connect(srv, "cut-new") as late:  # a socket opened meanwhile: told why, 1013
                    first = await late.recv()
                    assert first["event_type"] == "error" and first["data"]["error_code"] == "store_unavailable"
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await late.recv()
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

                proxy.restore()
                assert (await wait_for_health(srv, 200))["checks"]["store"] == "ok"
                await ws.send("chat", message="after, over the socket")
                assert (await ws.until("done", timeout=20))[-1]["data"]["status"] == "completed"
            after = (await c.post("/api/v1/chat", json={"message": "after", "session_id": "cut"})).json()
            assert after["status"] == "completed"
            history = (await c.get("/api/v1/sessions/cut/messages")).json()["messages"]
            assert [(m["role"], m["content"][:14]) for m in history] == [
                ("user", "before"), ("assistant", before["content"][:14]),
                ("user", "streaming when"),  # its answer could not be stored: none of it is there
                ("user", "after, over th"), ("assistant", history[4]["content"][:14]),
                ("user", "after"), ("assistant", after["content"][:14]),
            ]
            assert_history_is_whole(history, {"before": before, "after": after})
            assert (await c.get("/api/v1/sessions/cut")).json()["active_run_id"] is None


def test_the_cli_with_mysql_down_exits_at_once_with_one_clear_line() -> None:
    port = free_port()  # nothing listens there
    src = dataagent.__file__.rsplit("/dataagent/", 1)[0]
    env = {"PYTHONPATH": f"{src}:{src.rsplit('/', 1)[0]}", "DATAAGENT_SESSION_STORE": "mysql",
           "DATAAGENT_MYSQL_HOST": "127.0.0.1", "DATAAGENT_MYSQL_PORT": str(port), "DATAAGENT_API_KEYS": "k"}
    for args in (cli_command() + ["--port", str(free_port())],
                 [sys.executable, "-m", "uvicorn", "dataagent_server.main:app", "--port", str(free_port())]):
        started = time.monotonic()
        server = spawn(args, env, 0)
        code = server.proc.wait(20)
        server.stop()
        output = server.text()
        assert code != 0 and time.monotonic() - started < 15
        assert f"cannot use MySQL at 127.0.0.1:{port}/dataagent" in output and "Traceback" not in output, output
        assert sum("cannot use MySQL" in line for line in output.splitlines()) == 1
