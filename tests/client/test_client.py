"""Every method of the async client against a real server on 127.0.0.1 (memory store, demo engine)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dataagent.client import (
    AsyncDataAgentClient,
    ChatResult,
    DoneEvent,
    Event,
    HitlEvent,
    HitlResolvedEvent,
    RunStartedEvent,
    TextEvent,
    ToolResultEvent,
)
from tests.support import KEY_A, LiveServer, live_server, make_settings

pytestmark = pytest.mark.integration

SQL = "select name, city from customers order by id limit 5"
EDITED = "select name from customers order by id limit 2"


@pytest.fixture
async def srv() -> AsyncIterator[LiveServer]:
    async with live_server(make_settings(demo_chunks=20, demo_chunk_delay_ms=5)) as server:
        yield server


@pytest.fixture
async def client(srv: LiveServer) -> AsyncIterator[AsyncDataAgentClient]:
    async with AsyncDataAgentClient(srv.base_url, api_key=KEY_A) as c:
        yield c


def text_of(events: list[Event]) -> str:
    return "".join(e.data.content for e in events if isinstance(e, TextEvent))


async def stored_answer(client: AsyncDataAgentClient, session_id: str) -> str:
    return [m async for m in client.history(session_id) if m.role == "assistant"][-1].content


async def test_ask_waits_for_the_answer_and_stores_it(client: AsyncDataAgentClient) -> None:
    result = await client.ask("Which city has the most customers?", session_id="ask-1")
    assert isinstance(result, ChatResult) and result.status == "completed" and result.content
    assert isinstance(result.events[-1], DoneEvent) and result.interrupt is None
    assert await stored_answer(client, "ask-1") == result.content


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_stream_yields_typed_events_up_to_done_and_their_text_is_the_stored_answer(
    client: AsyncDataAgentClient, transport: str
) -> None:
    events = [e async for e in client.stream("How many orders?", session_id=f"st-{transport}", transport=transport)]
    assert isinstance(events[0], RunStartedEvent) and isinstance(events[-1], DoneEvent)
    assert events[-1].data.status == "completed"
    assert text_of(events) == await stored_answer(client, f"st-{transport}")


async def test_stream_without_a_session_id_makes_one(client: AsyncDataAgentClient) -> None:
    events = [e async for e in client.stream("hello")]
    sid = events[-1].session_id
    assert sid and (await client.session(sid)).message_count == 2


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_start_runs_in_the_background_and_join_follows_it_to_done(
    client: AsyncDataAgentClient, transport: str
) -> None:
    handle = await client.start("Which city has the most customers?", session_id=f"bg-{transport}")
    events = [e async for e in client.join(handle.session_id, transport=transport)]
    assert events[-1].run_id == handle.run_id and isinstance(events[-1], DoneEvent)
    assert text_of(events) == await stored_answer(client, handle.session_id)


async def test_cancel_ends_a_background_run_cancelled() -> None:
    async with live_server(make_settings(demo_chunks=200, demo_chunk_delay_ms=20)) as slow, \
            AsyncDataAgentClient(slow.base_url, api_key=KEY_A) as client:
        handle = await client.start("a long answer", session_id="cx")
        joined = client.join("cx")
        first = await anext(joined)
        cancelled = await client.cancel("cx", handle.run_id)
        assert cancelled.run_id == handle.run_id and first.run_id == handle.run_id
        events = [e async for e in joined]
        assert isinstance(events[-1], DoneEvent) and events[-1].data.status == "cancelled"


async def test_ask_for_sql_waits_for_approval_and_approve_returns_the_table(client: AsyncDataAgentClient) -> None:
    result = await client.ask(SQL, session_id="ap-1")
    assert result.status == "awaiting_approval" and result.interrupt is not None
    assert result.interrupt.data.action.args["sql"] == SQL
    done = await result.interrupt.approve()
    assert done.status == "completed" and done.tables[0].columns == ["name", "city"]
    assert done.tables[0].row_count == 5


async def test_reject_after_ask_refuses_the_statement(client: AsyncDataAgentClient) -> None:
    result = await client.ask(SQL, session_id="rj-1")
    assert result.interrupt is not None
    done = await result.interrupt.reject("not now")
    resolved = [e for e in done.events if isinstance(e, HitlResolvedEvent)][0]
    assert resolved.data.decision.type == "reject" and resolved.data.decision.message == "not now"
    assert done.status == "completed" and not done.tables


@pytest.mark.parametrize("transport", ["websocket", "sse"])
async def test_an_approval_edited_in_a_stream_runs_the_edited_sql(client: AsyncDataAgentClient, transport: str) -> None:
    events: list[Event] = []
    async for event in client.stream(SQL, session_id=f"ed-{transport}", transport=transport):
        events.append(event)
        if isinstance(event, HitlEvent):
            assert await event.edit(EDITED) is None
    resolved = [e for e in events if isinstance(e, HitlResolvedEvent)][0]
    assert resolved.data.decision.type == "edit" and resolved.data.decision.args == {"sql": EDITED}
    table = [e for e in events if isinstance(e, ToolResultEvent)][0].data.data
    assert table and table.table and table.table.columns == ["name"] and table.table.row_count == 2
    assert isinstance(events[-1], DoneEvent) and events[-1].data.status == "completed"


async def test_sessions_iterate_every_page_and_history_every_message(client: AsyncDataAgentClient) -> None:
    for n in range(3):
        await client.ask(f"question {n}", session_id=f"pg-{n}")
    pages = [p async for p in client.session_pages(page_size=2)]
    assert [len(p.sessions) for p in pages] == [2, 1]
    assert {s.session_id async for s in client.sessions(page_size=2)} == {"pg-0", "pg-1", "pg-2"}
    await client.ask("again", session_id="pg-0")
    history = [p async for p in client.history_pages("pg-0", page_size=3)]
    assert [len(p.messages) for p in history] == [3, 1]
    assert [m.role async for m in client.history("pg-0", page_size=3)] == ["user", "assistant"] * 2


async def test_delete_session_removes_it(client: AsyncDataAgentClient) -> None:
    from dataagent.client import SessionNotFound

    await client.ask("hi", session_id="del-1")
    await client.delete_session("del-1")
    with pytest.raises(SessionNotFound):
        await client.session("del-1")


async def test_health_reads_the_servers_status(client: AsyncDataAgentClient) -> None:
    health = await client.health()
    assert health.status == "ok" and health.checks.store == "ok"
