"""The LLM data agent over a real server, REST and WebSocket, against FakeOpenAI on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.fakes.openai_server import FakeOpenAI, RecordedRequest
from tests.services import require_service
from tests.support import LiveServer, WsClient, live_server, make_settings, ws_connect
from tests.support.polling import eventually, wait_for_text

pytestmark = pytest.mark.integration

SECRET = "sk-live-SECRET-9f8e7d6c5b4a"
STOPS = ("hitl", "done")
Events = list[dict[str, Any]]


def llm_settings(fake: FakeOpenAI, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "agent": "llm", "llm_base_url": fake.base_url, "llm_api_key": SECRET, "llm_model": "fake-model",
        "llm_timeout": 10,
    }
    values.update(overrides)
    return make_settings(**values)


# ------------------------------------------------------------------------------------ the two transports


class Rest:
    """A conversation over REST: POST /chat and /hitl wait for the run's end or its next approval."""

    name = "rest"

    def __init__(self, srv: LiveServer, client: httpx.AsyncClient, session_id: str) -> None:
        self.srv, self.client, self.session_id = srv, client, session_id
        self.interrupt_id: str | None = None
        self._pending: asyncio.Task[Events] | None = None

    async def ask(self, message: str) -> Events:
        return await self._post("/api/v1/chat", {"message": message, "session_id": self.session_id})

    async def decide(self, decision: dict[str, Any]) -> Events:
        body = {"interrupt_id": self.interrupt_id, "decisions": [decision]}
        return await self._post(f"/api/v1/chat/{self.session_id}/hitl", body)

    async def start(self, message: str | None = None, decision: dict[str, Any] | None = None) -> None:
        """Ask (or decide) without waiting: the answer is collected by `result()`."""
        call = self.ask(message) if message is not None else self.decide(decision or {})
        self._pending = asyncio.create_task(call)

    async def streaming(self, fake: FakeOpenAI, requests: int) -> None:
        await fake.wait_requests(requests, timeout_s=5)
        await wait_for_text(self.srv, self.client, self.session_id)  # REST shows no deltas before the end

    async def cancel(self) -> None:
        r = await self.client.post(f"/api/v1/chat/{self.session_id}/cancel")
        assert r.status_code == 200, r.text

    async def result(self) -> Events:
        assert self._pending is not None
        return await asyncio.wait_for(self._pending, 15)

    async def _post(self, path: str, body: dict[str, Any]) -> Events:
        r = await self.client.post(path, json=body)
        assert r.status_code == 200, r.text
        events: Events = r.json()["events"]
        self._note(events)
        return events

    def _note(self, events: Events) -> None:
        for event in events:
            if event["event_type"] == "hitl":
                self.interrupt_id = event["data"]["interrupt_id"]


class Ws(Rest):
    """The same conversation over one WebSocket: frames are read up to the run's `hitl` or `done`."""

    name = "ws"

    def __init__(self, srv: LiveServer, client: httpx.AsyncClient, session_id: str, ws: WsClient) -> None:
        super().__init__(srv, client, session_id)
        self.ws = ws
        self._seen: Events = []

    async def ask(self, message: str) -> Events:
        await self.ws.send("chat", message=message)
        return await self._until_stop()

    async def decide(self, decision: dict[str, Any]) -> Events:
        await self.ws.send("hitl_decision", interrupt_id=self.interrupt_id, decisions=[decision])
        return await self._until_stop()

    async def start(self, message: str | None = None, decision: dict[str, Any] | None = None) -> None:
        self._seen = []
        if message is not None:
            await self.ws.send("chat", message=message)
        else:
            await self.ws.send("hitl_decision", interrupt_id=self.interrupt_id, decisions=[decision])

    async def streaming(self, fake: FakeOpenAI, requests: int) -> None:
        self._seen += await self.ws.until("text", timeout=5)

    async def cancel(self) -> None:
        await self.ws.send("cancel")

    async def result(self) -> Events:
        return self._seen + await self.ws.until("done", timeout=15)

    async def _until_stop(self) -> Events:
        events: Events = []
        while not events or events[-1]["event_type"] not in STOPS:
            events.append(await self.ws.recv(15))
        self._note(events)
        return events


Conversation = Rest


@pytest_asyncio.fixture(params=["rest", "ws"])
async def talk(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """`async with talk(settings) as conv:` a conversation over the transport of the test's parameter."""

    @contextlib.asynccontextmanager
    async def open_conversation(settings: Any, session_id: str = "llm1") -> AsyncIterator[Conversation]:
        async with live_server(settings) as srv, srv.client() as client:
            if request.param == "rest":
                yield Rest(srv, client, session_id)
                return
            async with ws_connect(srv, session_id) as ws:
                assert (await ws.recv())["event_type"] == "connected"
                yield Ws(srv, client, session_id, ws)

    yield open_conversation


def of(events: Events, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["event_type"] == kind]


def kinds(events: Events) -> list[str]:
    return [e["event_type"] for e in events]


def tool_message(request: RecordedRequest, call_id: str) -> str:
    [content] = [m["content"] for m in request.messages if m["role"] == "tool" and m["tool_call_id"] == call_id]
    return str(content)


async def history(conv: Conversation) -> list[dict[str, Any]]:
    r = await conv.client.get(f"/api/v1/sessions/{conv.session_id}/messages")
    return list(r.json()["messages"])


# -------------------------------------------------------------------------------------------- scenarios

TOP_CITIES = "SELECT city, COUNT(*) AS n FROM customers GROUP BY city ORDER BY n DESC, city LIMIT 3"


async def test_a_question_is_answered_through_the_tools_with_an_approved_query(
    fake_openai: FakeOpenAI, talk: Callable[..., Any]
) -> None:
    fake = fake_openai
    fake.add_tool_calls([("call_lt", "list_tables", {})], text="Let me look.", prompt_tokens=100, completion_tokens=10)
    fake.add_tool_calls([("call_dt", "describe_table", {"table": "customers"})], prompt_tokens=150,
                        completion_tokens=10)
    fake.add_tool_calls([("call_sql", "run_sql", {"sql": TOP_CITIES})], arg_chunks=7, prompt_tokens=200,
                        completion_tokens=20)
    fake.add_text("The city with the most customers is shown in the table.", chunks=5, prompt_tokens=300,
                  completion_tokens=12)

    async with talk(llm_settings(fake)) as conv:
        asked = await conv.ask("Which city has the most customers?")

        assert kinds(asked)[0] == "run_started" and kinds(asked)[-1] == "hitl"
        assert [c["tool_name"] for c in of(asked, "tool_call")] == ["list_tables", "describe_table", "run_sql"]
        assert [r["status"] for r in of(asked, "tool_result")] == ["success", "success"]
        assert of(asked, "tool_result")[0]["result"] == "Tables: customers, orders, products"
        action = of(asked, "hitl")[0]["action"]
        assert action["name"] == "run_sql" and action["args"] == {
            "sql": TOP_CITIES, "statement_type": "SELECT", "read_only": True, "tables": ["customers"],
            "estimate": {"available": True, "rows": 50, "full_scans": ["customers"], "source": "EXPLAIN QUERY PLAN"}}
        assert len(fake.requests) == 3

        answered = await conv.decide({"type": "approve"})

        assert kinds(answered)[0] == "hitl_resolved" and kinds(answered)[-1] == "done"
        table = of(answered, "tool_result")[0]["data"]["table"]
        assert table["columns"] == ["city", "n"] and table["row_count"] == 3 and not table["truncated"]
        texts = of(answered, "text")
        assert len(texts) == 5 + 1 and texts[-1] == {"content": "", "is_final": True}
        done = of(answered, "done")[0]
        assert done["status"] == "completed"
        assert done["token_usage"] == {"prompt_tokens": 750, "completion_tokens": 52, "total_tokens": 802}
        last = fake.requests[3]
        assert [m["role"] for m in last.messages] == [
            "system", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
        assert tool_message(last, "call_sql").startswith("city | n\n")
        stored = await history(conv)
        assert [(m["role"], m["status"]) for m in stored] == [
            ("user", "completed"), ("tool", "success"), ("tool", "success"), ("tool", "success"),
            ("assistant", "completed")]
        assert stored[-1]["content"] == "Let me look.\n\nThe city with the most customers is shown in the table."
        assert [c["tool_name"] for c in stored[-1]["metadata"]["tool_calls"]] == [
            "list_tables", "describe_table", "run_sql"]
        health = (await conv.client.get("/api/v1/health")).json()
        assert health["agent"] == "llm"


async def test_a_rejection_reaches_the_model_with_its_reason(fake_openai: FakeOpenAI, talk: Callable[..., Any]) -> None:
    fake_openai.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM orders"})])
    fake_openai.add_text("Understood: I will not look at single orders.", chunks=3)

    async with talk(llm_settings(fake_openai)) as conv:
        await conv.ask("List all orders")
        answered = await conv.decide({"type": "reject", "message": "too much personal data"})

    result = of(answered, "tool_result")[0]
    assert result["status"] == "error" and "too much personal data" in result["result"]
    assert tool_message(fake_openai.requests[1], "call_sql") == (
        "The user rejected this statement: too much personal data")
    assert of(answered, "done")[0]["status"] == "completed"


async def test_an_edit_runs_the_edited_statement_after_the_same_checks(
    fake_openai: FakeOpenAI, talk: Callable[..., Any]
) -> None:
    fake_openai.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM products"})])
    fake_openai.add_text("Five categories.")
    edited = "SELECT category, COUNT(*) AS n FROM products GROUP BY category ORDER BY category"

    async with talk(llm_settings(fake_openai)) as conv:
        await conv.ask("What do we sell?")
        answered = await conv.decide({"type": "edit", "args": {"sql": edited, "read_only": "trust me"}})

    table = of(answered, "tool_result")[0]["data"]["table"]
    assert table["columns"] == ["category", "n"] and table["row_count"] == 5
    assert tool_message(fake_openai.requests[1], "call_sql").startswith(f"The user edited the statement to:\n{edited}")


async def test_a_write_is_refused_before_approval_and_the_model_is_told_why(
    fake_openai: FakeOpenAI, talk: Callable[..., Any]
) -> None:
    fake_openai.add_tool_calls([("call_w", "run_sql", {"sql": "UPDATE products SET price = 0"})])
    fake_openai.add_text("I can only read data.")

    async with talk(llm_settings(fake_openai)) as conv:
        events = await conv.ask("Make everything free")

    assert "hitl" not in kinds(events) and kinds(events)[-1] == "done"
    assert of(events, "tool_call")[0]["tool_args"]["read_only"] is False
    result = of(events, "tool_result")[0]
    assert result["status"] == "error" and result["result"].startswith("Refused: only read-only queries")
    assert tool_message(fake_openai.requests[1], "call_w") == result["result"]
    assert of(events, "done")[0]["status"] == "completed"


async def test_a_follow_up_question_sees_the_previous_turn(fake_openai: FakeOpenAI, talk: Callable[..., Any]) -> None:
    fake_openai.add_tool_calls([("call_n", "run_sql", {"sql": "SELECT COUNT(*) AS n FROM customers"})])
    fake_openai.add_text("There are 50 customers.")
    fake_openai.add_text("Of those 50, the table above shows the cities.")

    async with talk(llm_settings(fake_openai, hitl_policy="never")) as conv:
        first = await conv.ask("How many customers do we have?")
        assert of(first, "done")[0]["status"] == "completed"
        second = await conv.ask("And where do they live?")

    assert of(second, "done")[0]["status"] == "completed"
    request = fake_openai.requests[-1]
    assert [m["role"] for m in request.messages] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert request.messages[1]["content"] == "How many customers do we have?"
    assert json.loads(request.messages[2]["tool_calls"][0]["function"]["arguments"])["sql"] == (
        "SELECT COUNT(*) AS n FROM customers")
    assert request.messages[3] == {"role": "tool", "tool_call_id": "call_n", "content": "n\n50\n(1 row)"}
    assert request.messages[4] == {"role": "assistant", "content": "There are 50 customers."}
    assert request.messages[5]["content"] == "And where do they live?"


async def test_a_500_before_the_first_token_is_retried(fake_openai: FakeOpenAI, talk: Callable[..., Any]) -> None:
    fake_openai.add_error(500, headers={"retry-after-ms": "5"})
    fake_openai.add_text("Hello after a hiccup.", chunks=2)

    async with talk(llm_settings(fake_openai)) as conv:
        events = await conv.ask("Hello?")

    assert len(fake_openai.requests) == 2
    assert "error" not in kinds(events)
    assert of(events, "done")[0]["status"] == "completed"
    assert "".join(t["content"] for t in of(events, "text")) == "Hello after a hiccup."


@pytest.mark.parametrize(("mode", "words"), [
    ("drop", "broke off in the middle of its answer"),
    ("error_event", "reported an error in its stream: FakeOpenAI: scripted error in the middle of the stream"),
])
async def test_a_stream_that_breaks_after_the_first_token_fails_the_run_without_leaking_the_key(
    fake_openai: FakeOpenAI, talk: Callable[..., Any], mode: str, words: str
) -> None:
    fake_openai.add_stream_failure(after_chunks=2, text="The answer is forty", chunks=4, mode=mode)  # type: ignore[arg-type]

    async with talk(llm_settings(fake_openai)) as conv:
        events = await conv.ask("What is the answer?")
        stored = await history(conv)

    assert len(fake_openai.requests) == 1
    error = of(events, "error")[0]
    assert error["error_code"] == "agent_error" and error["recoverable"] is False
    assert words in error["message"]
    assert kinds(events)[-2:] == ["error", "done"] and of(events, "done")[0]["status"] == "failed"
    assert stored[-1]["status"] == "failed" and stored[-1]["content"] == "The answer"
    assert SECRET not in json.dumps(events) and SECRET not in json.dumps(stored)


async def test_cancel_mid_stream_closes_the_llm_stream_and_keeps_the_partial_answer(
    fake_openai: FakeOpenAI, talk: Callable[..., Any]
) -> None:
    fake_openai.add_slow_text("word " * 300, chunks=300, delay_s=0.02)

    async with talk(llm_settings(fake_openai)) as conv:
        await conv.start("Tell me everything")
        await conv.streaming(fake_openai, 1)
        await conv.cancel()
        events = await conv.result()
        stored = await history(conv)

    assert await fake_openai.wait_disconnect(3.0) == 1 and fake_openai.completed == 0
    done = of(events, "done")[0]
    assert done["status"] == "cancelled" and done["cancelled"] is True
    assert stored[-1]["status"] == "cancelled"
    assert stored[-1]["content"].startswith("word ") and len(stored[-1]["content"]) < len("word " * 300)


# ------------------------------------------------------------------------------- a slow query on MariaDB

MARIADB = ("127.0.0.1", 3306)


@pytest_asyncio.fixture
async def mariadb_data() -> AsyncIterator[tuple[str, AsyncEngine]]:
    """A fresh database with a `nums` table of 2000 rows (dropped afterwards), and an admin engine."""
    require_service(*MARIADB, "MariaDB")
    admin = create_async_engine(f"mysql+asyncmy://root@{MARIADB[0]}:{MARIADB[1]}/", isolation_level="AUTOCOMMIT")
    name = f"dataagent_llm_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE `{name}`")
        await conn.exec_driver_sql(f"CREATE TABLE `{name}`.nums (n INT PRIMARY KEY)")
        values = ", ".join(f"({i})" for i in range(2000))
        await conn.exec_driver_sql(f"INSERT INTO `{name}`.nums VALUES {values}")
    try:
        yield f"mysql+asyncmy://root@{MARIADB[0]}:{MARIADB[1]}/{name}", admin
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        await admin.dispose()


async def running_queries(admin: AsyncEngine, marker: str) -> list[str]:
    async with admin.connect() as conn:
        rows = (await conn.exec_driver_sql("SHOW FULL PROCESSLIST")).mappings().all()
    return [str(row["Info"]) for row in rows if row["Info"] and marker in str(row["Info"])
            and "PROCESSLIST" not in str(row["Info"])]


async def wait_for(predicate: Callable[[], Any], within_s: float, what: str) -> float:
    started = time.monotonic()
    await eventually(predicate, within_s, interval=0.05, what=what)
    return time.monotonic() - started


@pytest.mark.mysql
async def test_cancel_during_a_slow_query_kills_it_in_mariadb(
    fake_openai: FakeOpenAI, talk: Callable[..., Any], mariadb_data: tuple[str, AsyncEngine]
) -> None:
    data_url, admin = mariadb_data
    marker = f"slow_{uuid.uuid4().hex[:10]}"
    slow = f"SELECT SUM(a.n * b.n + c.n) AS {marker} FROM nums a CROSS JOIN nums b CROSS JOIN nums c"
    fake_openai.add_tool_calls([("call_slow", "run_sql", {"sql": slow})])

    async with talk(llm_settings(fake_openai, data_url=data_url, sql_timeout=120)) as conv:
        asked = await conv.ask("Sum everything with everything")
        args = of(asked, "hitl")[0]["action"]["args"]
        assert args["read_only"] is True and args["tables"] == ["nums"]
        await conv.start(decision={"type": "approve"})
        await wait_for(lambda: running_queries(admin, marker), 10, "the query to run in MariaDB")

        cancelled_at = time.monotonic()
        await conv.cancel()
        events = await conv.result()
        ended_in = time.monotonic() - cancelled_at

        async def gone() -> bool:
            return not await running_queries(admin, marker)

        gone_in = await wait_for(gone, 5, "the query to be killed")
        stored = await history(conv)

    assert of(events, "done")[0]["status"] == "cancelled"
    assert "tool_result" not in kinds(events)
    assert ended_in < 5 and gone_in < 5
    assert stored[-1]["status"] == "cancelled"
    assert len(fake_openai.requests) == 1  # the model was not asked again after the cancel

