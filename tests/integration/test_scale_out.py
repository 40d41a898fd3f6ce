"""Scale-out: two server processes on two ports sharing MariaDB and Redis behave as one process.

A run started through A is watched, cancelled, approved and resumed through B; the one-run-per-session rule
holds across them; kill -9 of a run's owner ends it (worker_lost) on the other; Redis lost and back.
Both servers reach Redis through a TCP proxy the test owns (cut / restore), never Redis itself.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import websockets

from tests.integration.test_cli import PYTHONPATH
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, create_database, drop_database
from tests.services import REDIS_DB, REDIS_HOST, REDIS_PORT, redis_url, require_service
from tests.support import (
    KEY_A,
    KEY_B,
    ServerProcess,
    WsClient,
    cli_command,
    free_port,
    spawn,
    wait_for_health,
    wait_healthy,
    ws_connect,
)
from tests.support.frames import assert_contiguous, kinds, text_of
from tests.tcp_proxy import ThreadedTcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]

SQL = "select name, city from customers order by id limit 5"


def server_env(database: str, redis_port: int, prefix: str, **extra: str) -> dict[str, str]:
    values = {
        "SESSION_STORE": "mysql", "MYSQL_HOST": MYSQL_HOST, "MYSQL_PORT": str(MYSQL_PORT), "MYSQL_DATABASE": database,
        "BROKER": "redis", "REDIS_URL": redis_url(redis_port), "REDIS_PREFIX": prefix,
        "API_KEYS": f"alice:{KEY_A},bob:{KEY_B}", "DEMO_CHUNKS": "60", "DEMO_CHUNK_DELAY_MS": "20",
        "RUN_LEASE": "2", "LOG_LEVEL": "warning",
    } | extra
    return {"PYTHONPATH": PYTHONPATH} | {f"DATAAGENT_{k}": v for k, v in values.items()}


def start_server(env: dict[str, str], workers: int = 1) -> ServerProcess:
    port = free_port()
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        args += ["--workers", str(workers)]
    return spawn(args, env, port)


def new_prefix() -> str:
    """A key prefix of this test run's own in the shared Redis."""
    return f"test-{secrets.token_hex(4)}:"


def delete_keys(prefix: str) -> None:
    with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB) as r:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)


@dataclass
class Cluster:
    database: str
    prefix: str
    proxy: ThreadedTcpProxy
    a: ServerProcess
    b: ServerProcess

    def env(self, **extra: str) -> dict[str, str]:
        return server_env(self.database, self.proxy.port, self.prefix, **extra)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    database = asyncio.run(create_database("dataagent_scale"))
    proxy = ThreadedTcpProxy(REDIS_HOST, REDIS_PORT).start()
    env = server_env(database, proxy.port, prefix)
    servers = [start_server(env), start_server(env)]
    try:
        for server in servers:
            wait_healthy(server)
        yield Cluster(database, prefix, proxy, *servers)
    finally:
        for server in servers:
            server.stop()
            if os.environ.get("SCALE_OUT_DEBUG"):
                print(server.text())
        proxy.close()
        asyncio.run(drop_database(database))
        delete_keys(prefix)


def new_sid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def texts(ws: WsClient, n: int) -> list[dict[str, Any]]:
    """Frames up to and including the n-th text frame."""
    out: list[dict[str, Any]] = []
    while sum(f["event_type"] == "text" for f in out) < n:
        out.append(await ws.recv())
    return out


def drop(ws: WsClient) -> None:
    """Lose the connection as a network would (no close handshake)."""
    ws.conn.transport.abort()


async def history(c: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    r = await c.get(f"/api/v1/sessions/{sid}/messages", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])



async def test_a_run_started_through_a_streams_to_a_socket_on_b_with_the_same_events_and_seqs(
    cluster: Cluster,
) -> None:
    a, b, sid = cluster.a, cluster.b, new_sid("watch")
    async with ws_connect(a, sid) as wa, ws_connect(b, sid) as wb, b.client() as rb:
        ca, cb = await wa.recv(), await wb.recv()
        assert ca["event_type"] == cb["event_type"] == "connected"
        assert ca["data"]["last_seq"] == cb["data"]["last_seq"]
        await wa.send("chat", message="watched from another process")
        fa, fb = await wa.until("done"), await wb.until("done")
        assert fa == fb  # the same frames: events, data, seqs, timestamps
        assert kinds(fa)[0] == "run_started" and fa[-1]["data"]["status"] == "completed"
        assert fa[0]["seq"] == ca["data"]["last_seq"] + 1
        assert_contiguous(fa)

        # as on one process the session is free once done is out: a chat through B at once, numbered on
        r = await rb.post("/api/v1/chat", json={"message": "the next question, through B", "session_id": sid})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "completed"
        fa2, fb2 = await wa.until("done"), await wb.until("done")
        assert fa2 == fb2 and [f["seq"] for f in fa2] == [e["seq"] for e in body["events"]]
        assert_contiguous(fa + fa2)
        messages = await history(rb, sid)
        assert [(m["role"], m["status"]) for m in messages] == [("user", "completed"), ("assistant", "completed")] * 2
        assert messages[1]["content"] == text_of(fa) and messages[3]["content"] == body["content"] == text_of(fa2)


async def test_cancel_through_b_over_rest_and_over_the_websocket(cluster: Cluster) -> None:
    a, b, sid = cluster.a, cluster.b, new_sid("cancel")
    async with ws_connect(a, sid) as wa, b.client() as rb:
        await wa.recv()
        await wa.send("chat", message="a long answer, cancelled through B")
        seen = await texts(wa, 3)
        run_id = seen[0]["data"]["run_id"]
        r = await rb.post(f"/api/v1/chat/{sid}/cancel", json={"run_id": run_id})
        assert r.status_code == 200, r.text
        assert r.json() == {"status": "cancelled", "session_id": sid, "run_id": run_id}
        # as on one process: once the cancel returns, the partial answer is stored and the session is free
        info = (await rb.get(f"/api/v1/sessions/{sid}")).json()
        assert info["active_run_id"] is None
        stored = (await history(rb, sid))[-1]
        assert (stored["role"], stored["status"], stored["run_id"]) == ("assistant", "cancelled", run_id)
        frames = seen + await wa.until("done")
        done = frames[-1]["data"]
        assert done["status"] == "cancelled" and done["cancelled"] is True and done["message_id"] == \
            stored["message_id"]
        assert stored["content"] == text_of(frames) and 0 < len(stored["content"])
        again = await rb.post(f"/api/v1/chat/{sid}/cancel")
        assert again.status_code == 404 and again.json()["error_code"] == "no_active_run"

    sid = new_sid("wscancel")
    async with ws_connect(a, sid) as wa, ws_connect(b, sid) as wb, a.client() as ra:
        await wa.recv(), await wb.recv()
        await wa.send("chat", message="a long answer, cancelled from a socket on B")
        await texts(wb, 3)
        await wb.send("cancel")
        fa, fb = await wa.until("done"), await wb.until("done")
        assert fa[-1] == fb[-1] and fa[-1]["data"]["status"] == "cancelled"
        assert_contiguous(fa)
        stored = (await history(ra, sid))[-1]
        assert stored["status"] == "cancelled" and stored["content"] == text_of(fa)


async def test_an_approval_through_b_continues_the_sql_run_started_on_a(cluster: Cluster) -> None:
    a, b, sid = cluster.a, cluster.b, new_sid("hitl")
    async with a.client() as ra, b.client() as rb:
        asked = (await ra.post("/api/v1/chat", json={"message": SQL, "session_id": sid})).json()
        assert asked["status"] == "awaiting_approval", asked
        hitl = asked["events"][-1]
        assert hitl["event_type"] == "hitl"
        info = (await rb.get(f"/api/v1/sessions/{sid}")).json()
        assert info["pending_interrupt"]["interrupt_id"] == hitl["data"]["interrupt_id"]
        r = await rb.post(f"/api/v1/chat/{sid}/hitl", json={
            "interrupt_id": hitl["data"]["interrupt_id"], "decisions": [{"type": "approve"}]})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "completed" and done["run_id"] == asked["run_id"] and done["message_id"]
        events = done["events"]
        assert kinds(events)[0] == "hitl_resolved" and kinds(events)[-1] == "done" and "hitl" not in kinds(events)
        assert events[0]["data"]["decision"]["source"] == "client"
        assert_contiguous([hitl, *events])
        table = next(e for e in events if e["event_type"] == "tool_result")["data"]["data"]["table"]
        assert table["columns"] == ["name", "city"] and table["row_count"] == 5
        assert "5 rows" in done["content"]
        late = await ra.post(f"/api/v1/chat/{sid}/hitl", json={
            "interrupt_id": hitl["data"]["interrupt_id"], "decisions": [{"type": "reject"}]})
        assert late.status_code == 409 and late.json()["error_code"] == "decision_conflict"
        assert [(m["role"], m["status"]) for m in await history(ra, sid)] == [
            ("user", "completed"), ("tool", "success"), ("assistant", "completed")]
        # the next run, through B (no socket there): it numbers on from A's `done`, none reused
        nxt = (await rb.post("/api/v1/chat", json={"message": "and then?", "session_id": sid})).json()
        assert nxt["status"] == "completed" and nxt["events"][0]["seq"] == events[-1]["seq"] + 1

    sid = new_sid("wshitl")
    async with ws_connect(a, sid) as wa, ws_connect(b, sid) as wb:
        await wa.recv(), await wb.recv()
        await wa.send("chat", message=SQL)
        asked_a, asked_b = await wa.until("hitl"), await wb.until("hitl")
        assert asked_a == asked_b
        await wb.send("hitl_decision", interrupt_id=asked_b[-1]["data"]["interrupt_id"],
                      decisions=[{"type": "approve"}])
        fa, fb = await wa.until("done"), await wb.until("done")
        assert fa == fb and fa[0]["event_type"] == "hitl_resolved" and fa[-1]["data"]["status"] == "completed"
        assert_contiguous(asked_a + fa)


async def test_a_client_resumes_on_b_after_losing_its_socket_on_a_with_no_gap_and_no_duplicate(
    cluster: Cluster,
) -> None:
    a, b, sid = cluster.a, cluster.b, new_sid("resume")
    async with ws_connect(a, sid) as wa:  # the URL form, mid-run
        await wa.recv()
        await wa.send("chat", message="an answer that outlives its first socket")
        seen = await texts(wa, 8)
        drop(wa)
    async with ws_connect(b, sid, query=f"after_seq={seen[-1]['seq']}") as wb, b.client() as rb:
        connected = await wb.recv()
        assert connected["data"]["recovered"] is True and connected["data"]["active_run_id"] == \
            seen[0]["data"]["run_id"]
        frames = seen + await wb.until("done")
        assert_contiguous(frames)
        assert (await history(rb, sid))[-1]["content"] == text_of(frames)

    sid = new_sid("resumeframe")  # the resume frame, on a socket opened once the run ended
    async with ws_connect(a, sid) as wa:
        await wa.recv()
        await wa.send("chat", message="an answer that ends while its client is away")
        seen = await texts(wa, 8)
        drop(wa)
    async with b.client() as rb:
        for _ in range(100):
            if (await rb.get(f"/api/v1/sessions/{sid}")).json()["active_run_id"] is None:
                break
            await asyncio.sleep(0.05)
        async with ws_connect(b, sid) as wb:
            connected = await wb.recv()
            assert connected["data"]["active_run_id"] is None
            await wb.send("resume", after_seq=seen[-1]["seq"])
            frames = seen + await wb.until("done")
            resumed = await wb.recv()  # the resume's answer, after the events it replayed
            assert resumed["event_type"] == "resumed" and resumed["data"]["replayed"] == len(frames) - len(seen)
            assert_contiguous(frames)
            assert frames[-1]["data"]["status"] == "completed"
            assert (await history(rb, sid))[-1]["content"] == text_of(frames)
            await wb.send("ping")
            assert (await wb.recv())["event_type"] == "pong"  # nothing more was queued: no duplicate


async def test_a_second_chat_through_b_while_a_runs_the_session_is_run_in_progress(cluster: Cluster) -> None:
    a, b, sid = cluster.a, cluster.b, new_sid("busy")
    async with ws_connect(a, sid) as wa, ws_connect(b, sid) as wb, b.client() as rb:
        await wa.recv(), await wb.recv()
        await wa.send("chat", message="a long answer on A")
        await texts(wa, 2)
        r = await rb.post("/api/v1/chat", json={"message": "a second one through B", "session_id": sid})
        assert r.status_code == 409 and r.json()["error_code"] == "run_in_progress"
        await wb.send("chat", message="a second one over B's socket")
        while True:
            frame = await wb.recv()
            if frame["event_type"] == "error":
                break
        assert frame["data"]["error_code"] == "run_in_progress" and frame["data"]["recoverable"] is True
        assert "seq" not in frame
        done = (await wa.until("done"))[-1]["data"]
        assert done["status"] == "completed" and (await wb.until("done"))[-1]["data"] == done
        user_messages = [m for m in await history(rb, sid) if m["role"] == "user"]
        assert [m["content"] for m in user_messages] == ["a long answer on A"]


async def test_kill_9_of_the_owner_ends_its_run_as_worker_lost_on_the_other_process(cluster: Cluster) -> None:
    b, sid = cluster.b, new_sid("kill")
    owner = start_server(cluster.env(DEMO_CHUNKS="1000", DEMO_CHUNK_DELAY_MS="10"))
    try:
        wait_healthy(owner)
        async with ws_connect(owner, sid) as wo, ws_connect(b, sid) as wb, b.client() as rb:
            await wo.recv(), await wb.recv()
            await wo.send("chat", message="an answer whose process dies")
            seen = await texts(wb, 20)
            await asyncio.sleep(1.0)  # past a lease renewal: a checkpoint is stored
            owner.stop(signal.SIGKILL)
            killed = time.monotonic()
            frames = seen + await wb.until("done", timeout=10)
            assert time.monotonic() - killed < 10
            run_id = frames[0]["data"]["run_id"]
            end = frames[-2:]
            assert kinds(end) == ["error", "done"]
            assert end[0]["data"] == {"error_code": "worker_lost", "message": end[0]["data"]["message"],
                                      "recoverable": False}
            done = end[1]["data"]
            assert done["status"] == "failed" and done["reason"] == "worker_lost" and done["cancelled"] is False
            seqs = [f["seq"] for f in frames]
            assert seqs == sorted(set(seqs))  # strictly increasing: no seq reused by the process that closed it

            messages = await history(rb, sid)
            answers = [m for m in messages if m["role"] == "assistant" and m["run_id"] == run_id]
            assert len(answers) == 1
            answer = answers[0]
            assert answer["status"] == "failed" and answer["message_id"] == done["message_id"]
            assert answer["metadata"]["reason"] == "worker_lost"
            assert answer["content"] and text_of(frames).startswith(answer["content"])
            info = (await rb.get(f"/api/v1/sessions/{sid}")).json()
            assert info["active_run_id"] is None

            r = await rb.post("/api/v1/chat", json={"message": "and life goes on", "session_id": sid})
            assert r.status_code == 200 and r.json()["status"] == "completed"
            assert r.json()["events"][0]["seq"] > seqs[-1]
            assert [f["seq"] for f in await wb.until("done")] == [e["seq"] for e in r.json()["events"]]
            drop(wo)
        await asyncio.sleep(0)
        messages = await history(rb_client := b.client(), sid)
        await rb_client.aclose()
        assert Counter(m["role"] for m in messages) == {"user": 2, "assistant": 2}
    finally:
        owner.stop(signal.SIGKILL)


async def test_redis_lost_new_answers_get_503_running_ones_finish_locally_and_service_comes_back(
    cluster: Cluster,
) -> None:
    a, b, sid, other = cluster.a, cluster.b, new_sid("outage"), new_sid("outage-cancel")
    async with ws_connect(a, sid) as wa, ws_connect(a, other) as wc, a.client() as ra, b.client() as rb:
        await wa.recv(), await wc.recv()
        await wa.send("chat", message="an answer that streams through the outage")
        await wc.send("chat", message="an answer cancelled during the outage")
        seen = await texts(wa, 2)
        await texts(wc, 2)
        cluster.proxy.cut()
        try:
            for c in (ra, rb):
                r = await c.post("/api/v1/chat", json={"message": "during", "session_id": new_sid("during")})
                assert r.status_code == 503 and r.json()["error_code"] == "broker_unavailable", r.text
                assert r.headers["Retry-After"]
            r = await rb.post(f"/api/v1/chat/{sid}/cancel")  # the run is on A: B cannot reach it
            assert r.status_code == 503 and r.json()["error_code"] == "broker_unavailable"
            await wc.send("cancel")  # a socket on the run's own process still stops it
            cancelled = await wc.until("done", timeout=10)
            assert cancelled[-1]["data"]["status"] == "cancelled"
            await wc.send("chat", message="a new answer during the outage")
            refused = await wc.recv()
            assert refused["event_type"] == "error" and refused["data"]["error_code"] == "broker_unavailable"
            assert refused["data"]["recoverable"] is True and "seq" not in refused
            for srv in (a, b):
                health = await wait_for_health(srv, 503)
                assert health["status"] == "degraded" and health["broker"] == "redis"
                assert health["checks"]["broker"] != "ok" and health["checks"]["store"] == "ok"
            async with ws_connect(b, new_sid("during")) as late:  # a socket opened meanwhile: told why, 1013
                first = await late.recv()
                assert first["event_type"] == "error" and first["data"]["error_code"] == "broker_unavailable"
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await late.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

            frames = seen + await wa.until("done", timeout=20)  # the running answer finishes on its process
            assert frames[-1]["data"]["status"] == "completed"
            assert_contiguous(frames)
            stored = (await history(ra, sid))[-1]
            assert stored["status"] == "completed" and stored["content"] == text_of(frames)
        finally:
            cluster.proxy.restore()

        for srv in (a, b):
            assert (await wait_for_health(srv, 200))["checks"]["broker"] == "ok"
        deadline = time.monotonic() + 10
        while True:  # the claim of the run that ended during the outage is released once Redis is back
            r = await rb.post("/api/v1/chat", json={"message": "after, through B", "session_id": sid})
            if r.status_code != 409 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        after = await wa.until("done")  # A watches B's run again
        assert [f["seq"] for f in after] == [e["seq"] for e in r.json()["events"]]
        assert after[0]["seq"] > frames[-1]["seq"]
        messages = await history(rb, sid)
        assert Counter((m["run_id"], m["role"]) for m in messages if m["role"] == "assistant") == {
            (frames[0]["data"]["run_id"], "assistant"): 1, (r.json()["run_id"], "assistant"): 1}
        await wc.send("chat", message="after, on A, cancelled through B")  # control reaches A again
        await texts(wc, 2)
        r = await rb.post(f"/api/v1/chat/{other}/cancel")
        assert r.status_code == 200 and (await wc.until("done"))[-1]["data"]["status"] == "cancelled"
        assert [(m["role"], m["status"]) for m in await history(rb, other)] == [
            ("user", "completed"), ("assistant", "cancelled"), ("user", "completed"), ("assistant", "cancelled")]


async def test_an_owner_cut_off_from_redis_longer_than_its_lease_does_not_store_the_answer_twice(
    cluster: Cluster,
) -> None:
    b, sid = cluster.b, new_sid("partition")
    own_proxy = ThreadedTcpProxy(REDIS_HOST, REDIS_PORT).start()
    owner = start_server(server_env(cluster.database, own_proxy.port, cluster.prefix, DEMO_CHUNKS="400",
                                    DEMO_CHUNK_DELAY_MS="10"))
    try:
        wait_healthy(owner)
        async with ws_connect(owner, sid) as wo, ws_connect(b, sid) as wb, b.client() as rb:
            await wo.recv(), await wb.recv()
            await wo.send("chat", message="an answer whose process loses Redis but not the database")
            await texts(wb, 5)
            own_proxy.cut()  # only this process loses Redis: the others close its run as worker_lost
            closed = (await wb.until("done", timeout=10))[-1]["data"]
            assert closed["status"] == "failed" and closed["reason"] == "worker_lost"
            local = await wo.until("done", timeout=20)  # the owner goes on, and ends it without storing again
            assert kinds(local)[-2:] == ["error", "done"] and local[-2]["data"]["error_code"] == "worker_lost"
            assert local[-1]["data"]["status"] == "failed" and local[-1]["data"]["message_id"] is None
            answers = [m for m in await history(rb, sid) if m["role"] == "assistant"]
            assert len(answers) == 1 and answers[0]["message_id"] == closed["message_id"]
    finally:
        owner.stop(signal.SIGKILL)
        own_proxy.close()
