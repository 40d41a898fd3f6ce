"""The LLM engine through the real core (RunManager, ChatService, in-memory store) against FakeOpenAI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from dataagent.adapters.agents.llm import LlmConfig, OpenAiEngine
from dataagent.adapters.agents.sql import SqlDatabase, build_demo_database, sqlite_url
from dataagent.application.chat import RunOutcome
from dataagent.domain.events import RunEvent
from dataagent.domain.models import MessagePageQuery
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest
from tests.support.polling import eventually
from tests.unit.harness import Core, build_core

SECRET = "sk-test-SECRET-0123456789abcdef"
USER = "alice"


@pytest.fixture(scope="session")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("demo") / "demo.sqlite3")
    build_demo_database(path)
    return path


def make_engine(fake: FakeOpenAI, demo_path: str, hitl_policy: str = "always", **config: Any) -> OpenAiEngine:
    database = SqlDatabase(sqlite_url(demo_path), max_rows=config.pop("max_rows", 50))
    values: dict[str, Any] = {
        "model": "fake-model", "base_url": fake.base_url, "api_key": SECRET, "timeout_s": 5.0,
        "retries": 2, "retry_base_s": 0.01,
    }
    values.update(config)
    return OpenAiEngine(LlmConfig(**values), database, hitl_policy=hitl_policy)


@dataclass
class Agent:
    """One session of the core with the LLM engine; `outcomes` keeps every outcome in order."""

    core: Core
    engine: OpenAiEngine
    fake: FakeOpenAI
    session_id: str = "s1"
    outcomes: list[RunOutcome] = field(default_factory=list)

    async def ask(self, question: str) -> RunOutcome:
        outcome = await self.core.chat.chat(USER, question, self.session_id)
        self.outcomes.append(outcome)
        return outcome

    async def decide(self, decision: dict[str, Any]) -> RunOutcome:
        outcome = await self.core.chat.decide_and_wait(USER, self.session_id, None, [decision])
        self.outcomes.append(outcome)
        return outcome

    async def messages(self) -> list[tuple[str, str]]:
        page = await self.core.sessions.messages(USER, self.session_id, _page())
        return [(m.role.value, m.status) for m in page.messages]


def _page() -> MessagePageQuery:
    return MessagePageQuery(limit=1000)


@pytest_asyncio.fixture
async def agent(fake_openai: FakeOpenAI, demo_path: str) -> AsyncIterator[Agent]:
    engine = make_engine(fake_openai, demo_path)
    yield Agent(build_core(engine), engine, fake_openai)
    await engine.close()


async def agent_with(fake: FakeOpenAI, demo_path: str, **config: Any) -> Agent:
    engine = make_engine(fake, demo_path, **config)
    return Agent(build_core(engine), engine, fake)


def of(outcome: RunOutcome, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in outcome.events if e.event_type == kind]


def kinds(events: list[RunEvent]) -> list[str]:
    return [e.event_type for e in events]


def roles(request: RecordedRequest) -> list[str]:
    return [m["role"] for m in request.messages]


def tool_message(request: RecordedRequest, call_id: str) -> dict[str, Any]:
    [message] = [m for m in request.messages if m["role"] == "tool" and m["tool_call_id"] == call_id]
    return message


# --------------------------------------------------------------------------------------------- answers


async def test_a_plain_answer_streams_its_deltas_and_reports_the_usage(agent: Agent) -> None:
    agent.fake.add_text("There are three tables.", chunks=4, prompt_tokens=11, completion_tokens=5)

    outcome = await agent.ask("How many tables are there?")

    assert outcome.status == "completed" and outcome.content == "There are three tables."
    texts = of(outcome, "text")
    assert len(texts) == 5 and texts[-1] == {"content": "", "is_final": True}
    assert of(outcome, "done")[0]["token_usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    [request] = agent.fake.requests
    assert request.model == "fake-model" and request.stream and request.include_usage
    assert request.authorization == f"Bearer {SECRET}"
    assert roles(request) == ["system", "user"]
    assert "sqlite" in request.messages[0]["content"].lower()
    assert request.messages[1]["content"] == "How many tables are there?"
    assert [t["function"]["name"] for t in request.tools] == [
        "list_tables", "describe_table", "run_sql", "propose_chart"]


async def test_split_tool_call_arguments_are_reassembled_and_results_go_back_to_the_model(agent: Agent) -> None:
    agent.fake.add_tool_calls(
        [("call_a", "list_tables", {}), ("call_b", "describe_table", {"table": "customers"})],
        text="Let me look.", arg_chunks=6, prompt_tokens=20, completion_tokens=7,
    )
    agent.fake.add_text("Customers have a city.", chunks=3, prompt_tokens=40, completion_tokens=4)

    outcome = await agent.ask("What do we know about customers?")

    assert outcome.status == "completed"
    assert outcome.content == "Let me look.\n\nCustomers have a city."
    calls = of(outcome, "tool_call")
    assert [(c["tool_call_id"], c["tool_name"], c["tool_args"]) for c in calls] == [
        ("call_a", "list_tables", {}), ("call_b", "describe_table", {"table": "customers"}),
    ]
    results = of(outcome, "tool_result")
    assert [r["status"] for r in results] == ["success", "success"]
    assert results[0]["result"] == "Tables: customers, orders, products"
    assert "- city TEXT NOT NULL" in results[1]["result"] and "Sample rows:" in results[1]["result"]
    second = agent.fake.requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool", "tool"]
    assistant = second.messages[2]
    assert assistant["content"] == "Let me look."
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [{}, {"table": "customers"}]
    assert tool_message(second, "call_b")["content"] == results[1]["result"]
    usage = of(outcome, "done")[0]["token_usage"]
    assert usage == {"prompt_tokens": 60, "completion_tokens": 11, "total_tokens": 71}
    assert await agent.messages() == [("user", "completed"), ("tool", "success"), ("tool", "success"),
                                      ("assistant", "completed")]


async def test_bad_arguments_and_unknown_tools_are_errors_the_model_reads(agent: Agent) -> None:
    agent.fake.add_tool_calls([
        ("call_1", "describe_table", '{"table": "custo'), ("call_2", "drop_everything", {}),
        ("call_3", "describe_table", {"table": "nope"}), ("call_4", "run_sql", {"query": "SELECT 1"}),
    ])
    agent.fake.add_text("Sorry.")

    outcome = await agent.ask("Describe customers")

    results = {r["tool_call_id"]: r for r in of(outcome, "tool_result")}
    assert all(r["status"] == "error" for r in results.values())
    assert "not valid JSON" in results["call_1"]["result"]
    assert "There is no tool 'drop_everything'" in results["call_2"]["result"]
    assert "Unknown table 'nope'" in results["call_3"]["result"]
    assert "needs a non-empty string argument 'sql'" in results["call_4"]["result"]
    assert of(outcome, "tool_call")[0]["tool_args"] == {"arguments": '{"table": "custo'}
    assert tool_message(agent.fake.requests[1], "call_2")["content"] == results["call_2"]["result"]
    assert outcome.status == "completed" and "hitl" not in kinds(outcome.events)


# ------------------------------------------------------------------------------------------- run_sql


SQL = "SELECT city, COUNT(*) AS n FROM customers GROUP BY city ORDER BY n DESC, city LIMIT 3"


async def test_run_sql_waits_for_approval_with_the_analysis_then_returns_the_table(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": SQL})], arg_chunks=5)
    agent.fake.add_text("The top city is shown above.", chunks=3)

    waiting = await agent.ask("Which cities have the most customers?")

    assert waiting.status == "awaiting_approval"
    hitl = of(waiting, "hitl")[0]
    assert hitl["action"]["name"] == "run_sql"
    estimate = {"available": True, "rows": 50, "full_scans": ["customers"], "source": "EXPLAIN QUERY PLAN"}
    assert hitl["action"]["args"] == {"sql": SQL, "statement_type": "SELECT", "read_only": True,
                                      "tables": ["customers"], "estimate": estimate}
    assert of(waiting, "tool_call")[0]["tool_args"] == {k: v for k, v in hitl["action"]["args"].items()
                                                        if k != "estimate"}
    assert len(agent.fake.requests) == 1

    done = await agent.decide({"type": "approve"})

    assert done.status == "completed" and done.content == "The top city is shown above."
    result = of(done, "tool_result")[0]
    table = result["data"]["table"]
    assert table["columns"] == ["city", "n"] and table["row_count"] == 3 and table["truncated"] is False
    sent = tool_message(agent.fake.requests[1], "call_sql")["content"]
    assert sent == result["result"] and sent.startswith("city | n\n") and sent.endswith("(3 rows)")


async def test_a_rejection_goes_back_to_the_model_with_the_reason(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM orders"})])
    agent.fake.add_text("Understood, I will not query orders.")

    await agent.ask("Show all orders")
    done = await agent.decide({"type": "reject", "message": "orders are confidential"})

    assert done.status == "completed" and done.content == "Understood, I will not query orders."
    result = of(done, "tool_result")[0]
    assert result["status"] == "error" and "orders are confidential" in result["result"]
    sent = tool_message(agent.fake.requests[1], "call_sql")["content"]
    assert sent == "The user rejected this statement: orders are confidential"


async def test_an_edit_is_reanalysed_run_and_reported_to_the_model(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM products"})])
    agent.fake.add_text("Here are the categories.")

    await agent.ask("What products are there?")
    edited = "SELECT category, COUNT(*) AS n FROM products GROUP BY category ORDER BY category"
    done = await agent.decide({"type": "edit", "args": {"sql": edited, "read_only": "forged", "tables": []}})

    result = of(done, "tool_result")[0]
    assert result["data"]["table"]["columns"] == ["category", "n"] and result["data"]["table"]["row_count"] == 5
    sent = tool_message(agent.fake.requests[1], "call_sql")["content"]
    assert sent == result["result"]  # stored as is: later turns' history says what really ran
    assert sent.startswith(f"The user edited the statement to:\n{edited}\n\ncategory | n")


async def test_an_edit_into_a_write_is_refused_and_the_model_is_told(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM products"})])
    agent.fake.add_text("The edit was refused.")

    await agent.ask("What products are there?")
    done = await agent.decide({"type": "edit", "args": {"sql": "DELETE FROM products"}})

    result = of(done, "tool_result")[0]
    assert result["status"] == "error" and result["result"] == (
        "The user edited the statement to:\nDELETE FROM products\n\n"
        "Refused: only read-only queries are allowed (DELETE statements are not read-only).")
    assert tool_message(agent.fake.requests[1], "call_sql")["content"] == result["result"]


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders",
    "SELECT 1; DELETE FROM orders",
    "WITH gone AS (DELETE FROM orders RETURNING id) SELECT count(*) FROM gone",
    "SELECT load_extension('x')",
])
async def test_a_write_is_refused_before_approval_and_the_model_reads_why(agent: Agent, sql: str) -> None:
    agent.fake.add_tool_calls([("call_w", "run_sql", {"sql": sql})])
    agent.fake.add_text("I cannot change data.")

    outcome = await agent.ask("Delete the orders")

    assert outcome.status == "completed" and "hitl" not in kinds(outcome.events)
    assert of(outcome, "tool_call")[0]["tool_args"]["read_only"] is False
    result = of(outcome, "tool_result")[0]
    assert result["status"] == "error" and result["result"].startswith("Refused: only read-only queries")
    assert tool_message(agent.fake.requests[1], "call_w")["content"] == result["result"]


async def test_policy_never_runs_reads_without_asking(fake_openai: FakeOpenAI, demo_path: str) -> None:
    engine = make_engine(fake_openai, demo_path, hitl_policy="never")
    agent = Agent(build_core(engine), engine, fake_openai)
    fake_openai.add_tool_calls([("c", "run_sql", {"sql": "SELECT COUNT(*) AS n FROM orders"})])
    fake_openai.add_text("300 orders.")
    try:
        outcome = await agent.ask("How many orders?")
    finally:
        await engine.close()
    assert outcome.status == "completed" and "hitl" not in kinds(outcome.events)
    assert of(outcome, "tool_result")[0]["data"]["table"]["rows"] == [[300]]


async def test_the_tool_rounds_stop_at_max_steps(fake_openai: FakeOpenAI, demo_path: str) -> None:
    agent = await agent_with(fake_openai, demo_path, max_steps=2)
    for i in range(3):
        fake_openai.add_tool_calls([(f"call_{i}", "list_tables", {})])
    try:
        outcome = await agent.ask("Loop forever")
    finally:
        await agent.engine.close()
    assert outcome.status == "completed"
    assert len(of(outcome, "tool_result")) == 2
    assert "limit of 2 tool-call rounds" in outcome.content
    assert [r.get("tool_choice") for r in fake_openai.requests] == [None, None, "none"]


async def test_call_ids_reused_across_rounds_are_made_unique(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_0", "list_tables", {})])
    agent.fake.add_tool_calls([("call_0", "list_tables", {})])
    agent.fake.add_text("Done.")

    outcome = await agent.ask("Twice")

    ids = [c["tool_call_id"] for c in of(outcome, "tool_call")]
    assert len(set(ids)) == 2 and ids[0] == "call_0"
    last = agent.fake.requests[2]
    assert [m["tool_call_id"] for m in last.messages if m["role"] == "tool"] == ids


# ------------------------------------------------------------------------------------------- history


async def test_a_follow_up_question_carries_the_previous_turn(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT COUNT(*) AS n FROM customers"})])
    agent.fake.add_text("There are 50 customers.")
    await agent.ask("How many customers are there?")
    await agent.decide({"type": "approve"})
    agent.fake.add_text("And 300 orders.")

    follow_up = await agent.ask("And how many orders?")

    assert follow_up.status == "completed"
    request = agent.fake.requests[-1]
    assert roles(request) == ["system", "user", "assistant", "tool", "assistant", "user"]
    previous = request.messages[1:5]
    assert previous[0] == {"role": "user", "content": "How many customers are there?"}
    assert previous[1]["tool_calls"][0]["id"] == "call_sql"
    assert json.loads(previous[1]["tool_calls"][0]["function"]["arguments"]) == {  # no analysis keys
        "sql": "SELECT COUNT(*) AS n FROM customers"}
    assert previous[2] == {"role": "tool", "tool_call_id": "call_sql", "content": "n\n50\n(1 row)"}
    assert previous[3] == {"role": "assistant", "content": "There are 50 customers."}
    assert request.messages[-1] == {"role": "user", "content": "And how many orders?"}


async def test_history_comes_from_the_store_so_a_new_engine_sees_it(
    fake_openai: FakeOpenAI, demo_path: str
) -> None:
    first = make_engine(fake_openai, demo_path)
    core = build_core(first)
    fake_openai.add_text("Hello Alice.")
    await core.chat.chat(USER, "My name is Alice.", "s1")
    await first.close()

    second = make_engine(fake_openai, demo_path)  # a restarted process: same store, new engine and run manager
    restarted = build_core(second, repo=core.repo)
    fake_openai.add_text("Your name is Alice.")
    try:
        outcome = await restarted.chat.chat(USER, "What is my name?", "s1")
    finally:
        await second.close()
    assert outcome.content == "Your name is Alice."
    assert [m["content"] for m in fake_openai.requests[-1].messages[1:]] == [
        "My name is Alice.", "Hello Alice.", "What is my name?",
    ]


async def test_no_history_is_sent_when_the_budget_is_zero(fake_openai: FakeOpenAI, demo_path: str) -> None:
    agent = await agent_with(fake_openai, demo_path, history_messages=0)
    fake_openai.add_text("One.").add_text("Two.")
    try:
        await agent.ask("first")
        await agent.ask("second")
    finally:
        await agent.engine.close()
    assert roles(fake_openai.requests[-1]) == ["system", "user"]


# ------------------------------------------------------------------------------------- failures


async def test_a_500_before_the_first_token_is_retried(agent: Agent) -> None:
    agent.fake.add_error(500).add_error(503, headers={"retry-after-ms": "1"})
    agent.fake.add_text("Fine now.", prompt_tokens=3, completion_tokens=2)

    outcome = await agent.ask("Hello?")

    assert outcome.status == "completed" and outcome.content == "Fine now."
    assert len(agent.fake.requests) == 3 and "error" not in kinds(outcome.events)
    assert of(outcome, "done")[0]["token_usage"]["total_tokens"] == 5


async def test_a_stream_dropped_after_the_role_chunk_has_shown_nothing_and_is_retried(agent: Agent) -> None:
    agent.fake.add_stream_failure(after_chunks=0, text="never shown", mode="drop")
    agent.fake.add_text("Second try.")

    outcome = await agent.ask("Hello?")

    assert outcome.status == "completed" and outcome.content == "Second try."
    assert len(agent.fake.requests) == 2


async def test_a_429_is_retried_and_gives_up_after_the_bound(agent: Agent) -> None:
    for _ in range(3):
        agent.fake.add_error(429, headers={"retry-after-ms": "1"})

    outcome = await agent.ask("Hello?")

    assert outcome.status == "failed" and len(agent.fake.requests) == 3
    error = of(outcome, "error")[0]
    assert error["error_code"] == "agent_error" and error["recoverable"] is False
    assert "rate-limiting" in error["message"] and "after 3 attempts" in error["message"]
    assert of(outcome, "done")[0]["status"] == "failed"


@pytest.mark.parametrize(("status", "words"), [
    (401, "rejected the API key (HTTP 401)"), (403, "refused access"), (404, "does not know the model 'fake-model'"),
    (400, "refused the request (HTTP 400)"),
])
async def test_client_errors_fail_at_once_with_a_clear_message(agent: Agent, status: int, words: str) -> None:
    agent.fake.add_error(status, message=f"Bad thing with key {SECRET}")

    outcome = await agent.ask("Hello?")

    assert outcome.status == "failed" and len(agent.fake.requests) == 1
    message = of(outcome, "error")[0]["message"]
    assert words in message and agent.fake.base_url in message
    assert SECRET not in message and "SECRET" not in message


@pytest.mark.parametrize(("mode", "words"), [
    ("drop", "broke off in the middle of its answer"),
    ("malformed", "sent a malformed stream"),
    ("error_event", "reported an error in its stream"),
])
async def test_a_stream_failing_after_the_first_token_fails_the_run_and_keeps_the_text(
    agent: Agent, mode: str, words: str
) -> None:
    agent.fake.add_stream_failure(after_chunks=2, text="abcdefghij", chunks=5, mode=mode)  # type: ignore[arg-type]

    outcome = await agent.ask("Hello?")

    assert outcome.status == "failed" and outcome.content == "abcd"
    assert len(agent.fake.requests) == 1  # not retried: tokens were already shown
    assert words in of(outcome, "error")[0]["message"]
    page = await agent.core.sessions.messages(USER, "s1", _page())
    answer = page.messages[-1]
    assert (answer.status, answer.content) == ("failed", "abcd")
    assert answer.metadata["error"]["error_code"] == "agent_error"


async def test_an_unreachable_llm_fails_after_the_retries(demo_path: str) -> None:
    async with FakeOpenAI() as fake:
        base_url = fake.base_url
    engine = OpenAiEngine(
        LlmConfig(model="m", base_url=base_url, api_key=SECRET, retries=1, retry_base_s=0.01, timeout_s=2),
        SqlDatabase(sqlite_url(demo_path)),
    )
    try:
        outcome = await build_core(engine).chat.chat(USER, "Hello?", "s1")
    finally:
        await engine.close()
    assert outcome.status == "failed"
    assert of(outcome, "error")[0]["message"] == f"Could not reach the LLM at {base_url} (after 2 attempts)"


async def test_a_timeout_before_the_first_token_fails_with_the_limit(
    fake_openai: FakeOpenAI, demo_path: str
) -> None:
    agent = await agent_with(fake_openai, demo_path, timeout_s=0.2, retries=0)
    fake_openai.add_slow_text("too late", chunks=2, delay_s=1.0)
    try:
        outcome = await agent.ask("Hello?")
    finally:
        await agent.engine.close()
    assert outcome.status == "failed"
    assert "did not answer within 0.2 s" in of(outcome, "error")[0]["message"]


# --------------------------------------------------------------------------------------------- cancel


async def test_cancel_mid_stream_closes_the_llm_response_and_keeps_the_partial_answer(agent: Agent) -> None:
    agent.fake.add_slow_text("word " * 200, chunks=200, delay_s=0.02)
    run = await agent.core.chat.start(USER, "Tell me a long story", "s1")
    await eventually(lambda: agent.core.runs.live_content(run.run_id), what="some streamed text")

    await agent.core.chat.cancel(USER, "s1")

    assert await agent.fake.wait_disconnect(2.0) == 1
    assert agent.fake.completed == 0
    page = await agent.core.sessions.messages(USER, "s1", _page())
    answer = page.messages[-1]
    assert answer.status == "cancelled" and answer.content.startswith("word ")
    assert len(answer.content) < len("word " * 200)
