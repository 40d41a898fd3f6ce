"""`dataagent-server --workers 2` end to end: REST, WebSocket and cancel spread over both workers, on the mysql
store and the redis broker, with the one key the CLI generated; and the settings that cannot run two workers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import PYTHONPATH, exit_code, port_is_open, running, wait_output
from tests.integration.test_scale_out import delete_keys, new_prefix, server_env, texts
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.services import REDIS_DB, REDIS_HOST, REDIS_PORT, redis_url, require_service
from tests.support import ServerProcess, WsClient, cli_command, free_port, ws_connect
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]

WORKERS = 2


def workers_args(port: int) -> list[str]:
    return cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)]


async def wait_workers_ready(server: ServerProcess, timeout: float = 30) -> None:
    def ready() -> bool:
        assert server.proc.poll() is None, server.text()
        return server.text().count("Application startup complete") >= WORKERS

    await eventually(ready, timeout, interval=0.1, what=f"{WORKERS} workers started")


async def health_counts(server: ServerProcess, samples: int = 16) -> set[int]:
    """The `connections` each answering worker reports (one new TCP connection per request)."""
    seen = set()
    for _ in range(samples):
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as c:
            seen.add((await c.get("/api/v1/health")).json()["connections"])
    return seen


def both_workers_hold_sockets(counts: set[int], open_sockets: int) -> bool:
    """Two workers, each with some of the open sockets (their counts add up; neither is empty)."""
    return any(0 < n < open_sockets and open_sockets - n in counts for n in counts)


@contextlib.asynccontextmanager
async def sockets_on_both_workers(
    server: ServerProcess, key: str, sessions: list[str], per_session: int
) -> AsyncIterator[dict[str, list[WsClient]]]:
    """`per_session` sockets on each session, plus idle ones until both workers hold some (the kernel picks)."""
    async with contextlib.AsyncExitStack() as stack:
        by_session: dict[str, list[WsClient]] = {}
        for sid in sessions:
            for _ in range(per_session):
                ws = await stack.enter_async_context(ws_connect(server, sid, key=key))
                assert (await ws.recv())["event_type"] == "connected"
                by_session.setdefault(sid, []).append(ws)
        total = len(sessions) * per_session
        while not both_workers_hold_sockets(await health_counts(server), total):
            assert total < 40, "every socket went to one worker"
            ws = await stack.enter_async_context(ws_connect(server, f"idle-{total}", key=key))
            await ws.recv()
            total += 1
        yield by_session


async def test_two_workers_serve_rest_websocket_and_cancel_with_one_generated_key() -> None:
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    async with fresh_database("dataagent_workers") as db:
        env = server_env(db, REDIS_PORT, prefix, LOG_LEVEL="info", DEMO_CHUNKS="30", DEMO_CHUNK_DELAY_MS="10")
        del env["DATAAGENT_API_KEYS"]  # the CLI generates one key for both workers
        port = free_port()
        try:
            with running(workers_args(port), env, port) as server:
                await wait_workers_ready(server)
                key = wait_output(server, r"^Generated API key: (\S+)$").group(1)
                assert server.text().count("Generated API key") == 1
                await exercise_workers(server, key)
        finally:
            delete_keys(prefix)


async def exercise_workers(server: ServerProcess, key: str) -> None:
    headers = {"X-API-Key": key}
    sessions = ["both-0", "both-1", "both-2"]
    async with sockets_on_both_workers(server, key, sessions, per_session=2) as sockets:
        # every socket of a session sees the same stream, whichever worker it is on and runs the answer
        for sid in sessions:
            first, second = sockets[sid]
            await first.send("chat", message=f"question on {sid}")
            frames = await first.until("done")
            assert frames == await second.until("done") and frames[-1]["data"]["status"] == "completed"

        # cancel from another connection: a socket of the session, then REST on new connections
        first, second = sockets["both-0"]
        await first.send("chat", message="a long one, cancelled from the other socket")
        await texts(second, 2)
        await second.send("cancel")
        assert (await first.until("done"))[-1]["data"]["status"] == "cancelled"
        assert (await second.until("done"))[-1]["data"]["status"] == "cancelled"

        first, second = sockets["both-1"]
        await first.send("chat", message="a long one, cancelled over REST")
        run_id = (await texts(second, 2))[0]["data"]["run_id"]
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
            r = await c.post("/api/v1/chat/both-1/cancel")
        assert r.status_code == 200 and r.json()["run_id"] == run_id
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
            last = (await c.get("/api/v1/sessions/both-1/messages")).json()["messages"][-1]
        assert (last["run_id"], last["status"]) == (run_id, "cancelled")
        for ws in (first, second):
            assert (await ws.until("done"))[-1]["data"]["status"] == "cancelled"

    # REST chats on one session, each on a new connection (so on either worker), and the key everywhere
    bodies: list[dict[str, Any]] = []
    for n in range(6):
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
            r = await c.post("/api/v1/chat", json={"message": f"rest {n}", "session_id": "rest-both"})
            assert r.status_code == 200, r.text
            bodies.append(r.json())
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
            assert (await c.get("/api/v1/sessions", headers={"X-API-Key": "not-the-key"})).status_code == 401
    seqs = [e["seq"] for body in bodies for e in body["events"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # one numbering across the workers
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        history = (await c.get("/api/v1/sessions/rest-both/messages")).json()["messages"]
        assert [m["content"] for m in history if m["role"] == "user"] == [f"rest {n}" for n in range(6)]
        assert [m["message_id"] for m in history if m["role"] == "assistant"] == [b["message_id"] for b in bodies]
        info = (await c.get("/api/v1/sessions/rest-both")).json()
        assert info["user_id"] == "default" and info["message_count"] == 12


@pytest.mark.parametrize(("store", "broker", "reason"), [
    ("mysql", "local", "local broker"),
    ("memory", "redis", "memory store"),
])
def test_two_workers_without_a_shared_store_and_broker_refuse_to_start(store: str, broker: str, reason: str) -> None:
    port = free_port()
    env = {"PYTHONPATH": PYTHONPATH, "DATAAGENT_SESSION_STORE": store, "DATAAGENT_BROKER": broker,
           "DATAAGENT_MYSQL_HOST": MYSQL_HOST, "DATAAGENT_MYSQL_PORT": str(MYSQL_PORT),
           "DATAAGENT_REDIS_URL": redis_url(), "DATAAGENT_API_KEYS": "k"}
    with running(workers_args(port), env, port) as server:
        assert exit_code(server, timeout=10) == 2
    output = server.text()
    assert reason in output and f"WORKERS={WORKERS}" in output and "Traceback" not in output, output
    assert not port_is_open(port)


def test_an_unreachable_redis_stops_start_up_with_one_line() -> None:
    port, nothing = free_port(), free_port()  # nothing listens on `nothing`
    env = {"PYTHONPATH": PYTHONPATH, "DATAAGENT_BROKER": "redis", "DATAAGENT_API_KEYS": "k",
           "DATAAGENT_REDIS_URL": redis_url(nothing)}
    with running(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], env, port) as server:
        assert exit_code(server, timeout=15) == 1
    output = server.text()
    lines = [line for line in output.splitlines() if "cannot use Redis" in line]
    assert len(lines) == 1 and f"127.0.0.1:{nothing}/{REDIS_DB}" in lines[0] and "Traceback" not in output, output
    assert not re.search(r"Generated API key", output)
