"""The client against two server processes sharing MariaDB and Redis: a stream resumed on the other process,
an approval decided through the process that did not start the run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dataagent.client import AsyncDataAgentClient, DoneEvent, Event, HitlEvent, TextEvent, ToolResultEvent
from tests.integration.test_scale_out import delete_keys, new_prefix, server_env, start_server
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, create_database, drop_database
from tests.services import REDIS_HOST, REDIS_PORT, require_service
from tests.support import KEY_A, ServerProcess, eventually, wait_healthy
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix, database = new_prefix(), asyncio.run(create_database("dataagent_client"))
    env = server_env(database, REDIS_PORT, prefix, DEMO_CHUNKS="60", DEMO_CHUNK_DELAY_MS="20")
    servers = [start_server(env), start_server(env)]
    try:
        for server in servers:
            wait_healthy(server)
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        asyncio.run(drop_database(database))
        delete_keys(prefix)


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_a_stream_cut_on_one_process_resumes_on_the_other_with_the_exact_stored_text(
    pair: tuple[ServerProcess, ServerProcess], transport: str
) -> None:
    a, b = pair
    sid = f"xp-{transport}"
    async with TcpProxy("127.0.0.1", a.port) as proxy, AsyncDataAgentClient(
            f"http://127.0.0.1:{proxy.port}", api_key=KEY_A, backoff=0.05, max_backoff=0.5, retries=60) as client:
        events: list[Event] = []
        async for event in client.stream("a long answer", session_id=sid, transport=transport):
            events.append(event)
            if sum(isinstance(e, TextEvent) for e in events) == 3 and proxy.upstream[1] == a.port:
                proxy.cut()
                proxy.upstream = ("127.0.0.1", b.port)  # the next connection reaches the other process
                proxy.restore()
        assert isinstance(events[-1], DoneEvent) and proxy.connections >= 2
        stored = [m async for m in client.history(sid) if m.role == "assistant"][0].content
        assert "".join(e.data.content for e in events if isinstance(e, TextEvent)) == stored


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_an_approval_edited_through_the_other_process_runs_the_edited_sql(
    pair: tuple[ServerProcess, ServerProcess], transport: str
) -> None:
    a, b = pair
    sid = f"xh-{transport}"
    async with AsyncDataAgentClient(a.base_url, api_key=KEY_A) as on_a, \
            AsyncDataAgentClient(b.base_url, api_key=KEY_A, transport=transport) as on_b:
        handle = await on_a.start("select name, city from customers order by id limit 5", session_id=sid)
        events: list[Event] = []
        async for event in on_b.join(sid):
            events.append(event)
            if isinstance(event, HitlEvent):
                await event.edit("select city from customers order by id limit 2")
        assert events[-1].run_id == handle.run_id
        result = [e for e in events if isinstance(e, ToolResultEvent)][0].data.data
        assert result and result.table and result.table.columns == ["city"] and result.table.row_count == 2

        async def idle() -> bool:
            return (await on_a.session(sid)).active_run_id is None
        await eventually(idle, what="the run ended on A")
