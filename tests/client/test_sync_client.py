"""The blocking client, the same calls on its own thread's loop (run here off the server's loop)."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.client import DataAgentClient, DoneEvent, HitlEvent, SessionNotFound, ToolResultEvent
from tests.support import KEY_A, live_server, make_settings

pytestmark = pytest.mark.integration

SQL = "select name, city from customers order by id limit 5"


def blocking_session(base_url: str) -> None:
    with DataAgentClient(base_url, api_key=KEY_A, transport="sse") as client:
        result = client.ask(SQL, session_id="sync-1")
        assert result.interrupt is not None
        done = result.interrupt.edit("select city from customers order by id limit 3")
        assert done.status == "completed" and done.tables[0].columns == ["city"]

        tables = []
        for event in client.stream(SQL, session_id="sync-2", transport="websocket"):
            if isinstance(event, HitlEvent):
                assert event.approve() is None
            if isinstance(event, ToolResultEvent) and event.data.data and event.data.data.table:
                tables.append(event.data.data.table)
        assert tables[0].row_count == 5

        handle = client.start("a long answer", session_id="sync-3")
        joined = client.join("sync-3")
        assert next(joined).run_id == handle.run_id
        assert client.cancel("sync-3").run_id == handle.run_id
        events = list(joined)
        assert isinstance(events[-1], DoneEvent) and events[-1].data.status == "cancelled"

        assert {s.session_id for s in client.sessions(page_size=1)} == {"sync-1", "sync-2", "sync-3"}
        assert [m.role for m in client.history("sync-1", page_size=1)] == ["user", "tool", "assistant"]
        assert client.session("sync-1").message_count == 3
        client.delete_session("sync-1")
        with pytest.raises(SessionNotFound):
            client.session("sync-1")
        assert client.health().status == "ok"


async def test_the_blocking_client_asks_streams_approves_joins_cancels_and_pages() -> None:
    async with live_server(make_settings(demo_chunks=100, demo_chunk_delay_ms=10)) as srv:
        await asyncio.to_thread(blocking_session, srv.base_url)
