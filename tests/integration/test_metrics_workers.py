"""GET /metrics with `dataagent-server --workers 2` (MySQL + Redis): whichever worker answers the scrape, it adds
the values of both processes (prometheus-client's multiprocess mode in the directory the CLI prepares)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_metrics import parse, value
from tests.integration.test_scale_out import REDIS_HOST, REDIS_PORT, delete_keys, new_prefix, server_env
from tests.integration.test_workers import (
    both_workers_hold_sockets,
    health_counts,
    running,
    sockets_on_both_workers,
    wait_workers_ready,
    workers_args,
)
from tests.mysqldb import fresh_database
from tests.services import require_service
from tests.support import KEY_A, free_port

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]

CHATS = 4
SCRAPES = 8


async def scrape_new_connection(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=base_url, headers={"X-API-Key": KEY_A}, timeout=30) as c:
        r = await c.get("/metrics")
        assert r.status_code == 200, r.text
        return parse(r.text)


async def test_a_scrape_of_either_worker_adds_both_processes() -> None:
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    async with fresh_database("dataagent_metrics_workers") as db:
        env = server_env(db, REDIS_PORT, prefix, LOG_LEVEL="info", DEMO_CHUNKS="3", DEMO_CHUNK_DELAY_MS="1")
        port = free_port()
        try:
            with running(workers_args(port), env, port) as server:
                await wait_workers_ready(server)
                for n in range(CHATS):  # each on a new connection: the kernel spreads them over the workers
                    async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": KEY_A}) as c:
                        r = await c.post("/api/v1/chat", json={"message": f"q {n}", "session_id": f"mw-{n}"})
                        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
                async with sockets_on_both_workers(server, KEY_A, ["mw-socket"], per_session=1):
                    samples = [await scrape_new_connection(server.base_url) for _ in range(SCRAPES)]
                    opened = value(samples[0], "dataagent_connections_opened_total", transport="ws")
                    assert both_workers_hold_sockets(await health_counts(server, samples=48), int(opened))
                for m in samples:  # every scrape, whichever worker served it, holds both processes' values
                    assert value(m, "dataagent_answers_started_total") == CHATS
                    assert value(m, "dataagent_answers_ended_total", status="completed", reason="") == CHATS
                    assert value(m, "dataagent_connections_opened_total", transport="ws") == opened
                    assert value(m, "dataagent_connections_active", transport="ws") == opened
                    assert value(m, "dataagent_group_commit_batch_size_count") >= 2 * CHATS
                    assert value(m, "dataagent_broker_call_duration_seconds_count", operation="claim") == CHATS
        finally:
            delete_keys(prefix)
