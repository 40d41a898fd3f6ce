"""kill -9 of a run's owner while a question waits in its session's queue (multitask_strategy enqueue): the
process that closes the dead run (worker_lost) starts the queued question at once, without waiting for another
chat on the session to drain the queue."""

from __future__ import annotations

import signal

import pytest

from tests.integration.test_scale_out import (
    REDIS_HOST,
    REDIS_PORT,
    delete_keys,
    history,
    new_prefix,
    new_sid,
    server_env,
    start_server,
)
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.services import require_service
from tests.support import ServerProcess, wait_healthy, ws_connect

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]


async def test_the_queued_question_of_a_dead_owner_runs_on_the_process_that_closes_its_run() -> None:
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    prefix, sid = new_prefix(), new_sid("lostq")
    async with fresh_database("dataagent_lostq") as database:
        owner_env = server_env(database, REDIS_PORT, prefix, RUN_LEASE="1", DEMO_CHUNKS="1000",
                               DEMO_CHUNK_DELAY_MS="20")
        b: ServerProcess = start_server(server_env(database, REDIS_PORT, prefix, RUN_LEASE="1", DEMO_CHUNKS="5"))
        a: ServerProcess = start_server(owner_env)
        try:
            wait_healthy(b)
            wait_healthy(a)
            async with ws_connect(a, sid) as wa, ws_connect(b, sid) as wb, b.client() as rb:
                await wa.recv(), await wb.recv()
                await wa.send("chat", message="a long answer whose process dies")
                for _ in range(5):  # the answer streams to B
                    await wb.until("text")
                r = await rb.post("/api/v1/chat", json={
                    "message": "the queued question", "session_id": sid, "multitask_strategy": "enqueue",
                    "wait": False})
                assert r.status_code == 202, r.text
                queued_run = r.json()["run_id"]
                await wb.until("queued")
                a.stop(signal.SIGKILL)
                first = await wb.until("done", timeout=15)
                assert first[-1]["data"]["reason"] == "worker_lost", first[-2:]
                second = await wb.until("done", timeout=15)  # no other chat comes to drain the queue
                assert second[-1]["run_id"] == queued_run and second[-1]["data"]["status"] == "completed", second
                stored = [(m["role"], m["status"]) for m in await history(rb, sid)]
                assert stored == [("user", None), ("assistant", "failed"), ("user", None), ("assistant", "completed")] \
                    or [role for role, _ in stored] == ["user", "assistant", "user", "assistant"], stored
        finally:
            a.stop(signal.SIGKILL)
            b.stop()
            delete_keys(prefix)
