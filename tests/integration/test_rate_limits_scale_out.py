"""Per-key limits on two server processes sharing MariaDB and Redis: the counts live in Redis, so the limits hold
whichever process each question reaches; a run slot whose process was killed lapses with the run's lease."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import pytest

from tests.integration.rate_scenarios import (
    a_second_answer_is_refused_until_the_first_ends,
    ask_rest,
    questions_past_the_rate_are_refused_until_the_window_resets,
)
from tests.integration.test_scale_out import (
    REDIS_HOST,
    REDIS_PORT,
    delete_keys,
    new_prefix,
    server_env,
    start_server,
)
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.services import require_service
from tests.support import ServerProcess, wait_healthy
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]


@contextlib.asynccontextmanager
async def two_servers(**limits: str) -> AsyncIterator[list[ServerProcess]]:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    async with fresh_database("dataagent_limits") as db:
        env = server_env(db, REDIS_PORT, prefix, **limits)
        servers = [start_server(env), start_server(env)]
        try:
            for server in servers:
                wait_healthy(server)
            yield servers
        finally:
            for server in servers:
                server.stop()
            delete_keys(prefix)


async def test_the_rate_is_shared_by_both_processes() -> None:
    async with two_servers(RATE_LIMIT="3/2second", DEMO_CHUNKS="3", DEMO_CHUNK_DELAY_MS="1") as servers:
        await questions_past_the_rate_are_refused_until_the_window_resets(servers, "rate")


async def test_running_answers_are_counted_across_both_processes_and_a_dead_ones_slot_lapses() -> None:
    async with two_servers(MAX_RUNS_PER_KEY="1", DEMO_CHUNKS="300", DEMO_CHUNK_DELAY_MS="20") as servers:
        a, b = servers
        await a_second_answer_is_refused_until_the_first_ends(servers, "runs")
        # a run of A holds the key's slot past its lease (renewed); A is killed: the slot lapses with the run's
        # lease (2 s), and B admits
        assert (await ask_rest(a, "dead", wait=False)).status_code == 202
        assert (await ask_rest(b, "other", wait=False)).status_code == 429
        await asyncio.sleep(3)  # kept: the time is the scenario, past the 2 s lease: a live run's slot is refreshed
        assert (await ask_rest(b, "other", wait=False)).status_code == 429
        a.stop(signal.SIGKILL)

        async def admitted() -> bool:
            r = await ask_rest(b, "other", wait=False)
            assert r.status_code in (202, 429), r.text
            return r.status_code == 202

        await eventually(admitted, timeout=15, interval=0.2, what="the dead process's slot lapsed")
