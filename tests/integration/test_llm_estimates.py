"""DATAAGENT_SQL_MAX_ESTIMATED_ROWS with the LLM engine: refused before approval, and the model reads why."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support import live_server, make_settings

pytestmark = pytest.mark.integration


def _settings(fake: FakeOpenAI, **overrides: Any) -> Any:
    return make_settings(agent="llm", llm_base_url=fake.base_url, llm_api_key="sk-test", llm_model="fake-model",
                         llm_timeout=10, **overrides)


async def test_a_statement_over_the_limit_is_refused_before_approval_and_the_model_reads_why(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.add_tool_calls([("call_big", "run_sql", {"sql": "SELECT * FROM orders"})])
    fake_openai.add_text("That would read too much; here is a narrower answer.")
    async with live_server(_settings(fake_openai, sql_max_estimated_rows=100)) as srv, srv.client() as client:
        r = await client.post("/api/v1/chat", json={"message": "Show me every order"})
    body = r.json()
    assert body["status"] == "completed", body
    kinds = [e["event_type"] for e in body["events"]]
    assert "hitl" not in kinds
    [result] = [e["data"] for e in body["events"] if e["event_type"] == "tool_result"]
    assert result["status"] == "error"
    told = [m["content"] for m in fake_openai.requests[1].messages if m["role"] == "tool"]
    assert told == [result["result"]]
    assert told[0].startswith("Refused: the database estimates it handles about 300 rows, reading all of orders, "
                              "over the limit of 100 (DATAAGENT_SQL_MAX_ESTIMATED_ROWS)")


async def test_under_the_limit_the_approval_carries_the_estimate(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_tool_calls([("call_one", "run_sql", {"sql": "SELECT name FROM customers WHERE id = 3"})])
    async with live_server(_settings(fake_openai, sql_max_estimated_rows=100)) as srv, srv.client() as client:
        r = await client.post("/api/v1/chat", json={"message": "Who is customer 3?"})
    body = r.json()
    assert body["status"] == "awaiting_approval", body
    hitl = body["events"][-1]["data"]
    assert hitl["action"]["args"]["estimate"] == {
        "available": True, "rows": None, "full_scans": [], "source": "EXPLAIN QUERY PLAN"}
