"""Charts with the LLM engine over a real server (REST and WebSocket) against FakeOpenAI: the server's own
chart of a query result, a chart the model proposes, and a proposal refused to the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_llm_agent import TOP_CITIES, history, llm_settings, of, talk, tool_message

__all__ = ["talk"]  # the fixture: each test runs over REST and over the WebSocket

pytestmark = pytest.mark.integration


async def test_query_result_and_proposed_chart_carry_specs_and_a_refusal_reaches_the_model(
    fake_openai: FakeOpenAI, talk: Callable[..., Any]
) -> None:
    fake = fake_openai
    fake.add_tool_calls([("call_sql", "run_sql", {"sql": TOP_CITIES})])
    fake.add_tool_calls([
        ("call_url", "propose_chart", {"mark": "bar", "x": "city", "y": "n", "title": "https://evil.example/x"}),
        ("call_pie", "propose_chart", {"mark": "arc", "theta": "n", "color": "city"}),
    ])
    fake.add_text("Shown as a pie.")

    async with talk(llm_settings(fake)) as conv:
        await conv.ask("Top cities by customers, as a pie")
        answered = await conv.decide({"type": "approve"})

        sql, url, pie = of(answered, "tool_result")
        assert sql["data"]["chart"]["mark"]["type"] == "bar"
        assert url["status"] == "error" and "URLs are not allowed" in url["result"] and "data" not in url
        assert tool_message(fake.requests[2], "call_url") == url["result"]
        chart = pie["data"]["chart"]
        assert pie["status"] == "success" and chart["mark"] == {"type": "arc"}
        assert chart["data"]["values"] == [{"city": c, "n": n} for c, n in sql["data"]["table"]["rows"]]
        stored = {m["metadata"].get("tool_call_id"): m["metadata"] for m in await history(conv)}
        assert stored["call_sql"]["chart"] == sql["data"]["chart"] and stored["call_pie"]["chart"] == chart
        assert "chart" not in stored["call_url"]
