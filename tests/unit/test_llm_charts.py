"""propose_chart in the LLM engine, against FakeOpenAI through the real core: an allowed proposal becomes
our spec in its tool_result's `data.chart`; anything else is a refusal the model reads."""

from __future__ import annotations

from typing import Any

from dataagent.domain.models import MessagePageQuery
from tests.unit.test_llm_engine import Agent, agent, demo_path, of, tool_message

__all__ = ["agent", "demo_path"]  # fixtures

BY_COUNTRY = "SELECT country, COUNT(*) AS n FROM customers GROUP BY country ORDER BY n DESC, country"


async def query_then(agent: Agent, *calls: tuple[str, str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The model runs BY_COUNTRY (approved), then makes `calls`, then answers; the tool results in order."""
    agent.fake.add_tool_calls([("call_sql", "run_sql", {"sql": BY_COUNTRY})])
    agent.fake.add_tool_calls(list(calls))
    agent.fake.add_text("Here is the chart.")
    assert (await agent.ask("Customers per country, as a pie?")).status == "awaiting_approval"
    done = await agent.decide({"type": "approve"})
    assert done.status == "completed"
    return of(done, "tool_result")


async def test_an_allowed_proposal_gets_a_chart_built_by_the_server_from_the_latest_result(agent: Agent) -> None:
    sql, pie = await query_then(agent, ("call_pie", "propose_chart",
                                        {"mark": "arc", "theta": "n", "color": "country", "title": "Customers"}))

    assert sql["data"]["chart"]["mark"]["type"] == "bar"  # the server's own chart of the table
    assert pie["status"] == "success" and "table" not in pie["data"]
    chart = pie["data"]["chart"]
    assert chart["mark"] == {"type": "arc"} and chart["title"] == "Customers"
    assert chart["encoding"]["theta"]["field"] == "n" and chart["encoding"]["color"]["field"] == "country"
    assert chart["data"]["values"] == [{"country": c, "n": n} for c, n in sql["data"]["table"]["rows"]]
    assert tool_message(agent.fake.requests[2], "call_pie")["content"] == pie["result"]
    stored = (await agent.core.sessions.messages("alice", agent.session_id, MessagePageQuery(limit=1000))).messages
    assert [m.metadata.get("chart") for m in stored if m.metadata.get("tool_call_id") == "call_pie"] == [chart]


async def test_unknown_marks_urls_and_expressions_are_refused_to_the_model(agent: Agent) -> None:
    results = await query_then(
        agent,
        ("call_rect", "propose_chart", {"mark": "rect", "x": "country", "y": "n"}),
        ("call_url", "propose_chart", {"mark": "bar", "x": "country", "y": "n",
                                       "data": {"url": "https://evil.example/data.json"}}),
        ("call_expr", "propose_chart", {"mark": "bar", "x": "country", "y": "datum.n * 1000"}),
        ("call_calc", "propose_chart", {"mark": "bar", "x": "country", "y": "n",
                                        "transform": [{"calculate": "datum.n", "as": "m"}]}),
    )

    refused = results[1:]
    assert [r["status"] for r in refused] == ["error"] * 4
    assert all("data" not in r for r in refused)
    assert "Unknown mark 'rect'" in refused[0]["result"]
    assert "URLs are not allowed" in refused[1]["result"]
    assert "looks like an expression" in refused[2]["result"]
    assert "Unknown argument(s) 'transform'" in refused[3]["result"]
    told = agent.fake.requests[2]
    assert [tool_message(told, c)["content"] for c in ("call_rect", "call_url", "call_expr", "call_calc")] == [
        r["result"] for r in refused]


async def test_a_proposal_before_any_query_is_refused(agent: Agent) -> None:
    agent.fake.add_tool_calls([("call_pie", "propose_chart", {"mark": "bar", "x": "country", "y": "n"})])
    agent.fake.add_text("No data yet.")

    outcome = await agent.ask("Chart it")

    [result] = of(outcome, "tool_result")
    assert result["status"] == "error" and result["result"].startswith("There is no result to chart yet")
