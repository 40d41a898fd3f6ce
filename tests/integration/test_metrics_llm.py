"""The LLM engine's calls, retries and token usage in GET /metrics, and its spans under the run's, against
FakeOpenAI on 127.0.0.1."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dataagent.adapters.observability.tracing import OtelTracing
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_llm_agent import llm_settings
from tests.integration.test_metrics import scrape, value
from tests.support import live_server

pytestmark = pytest.mark.integration


async def test_llm_calls_retries_and_tokens_are_counted_and_each_call_is_a_span_of_the_run(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.add_error(503, headers={"retry-after-ms": "1"})  # retried once, then the tool call
    fake_openai.add_tool_calls([("call_sql", "run_sql", {"sql": "SELECT * FROM customers"})])
    fake_openai.add_text("Here they are.", chunks=3, prompt_tokens=120, completion_tokens=7)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = llm_settings(fake_openai)
    async with live_server(settings, overrides={"tracing": OtelTracing(provider)}) as srv, srv.client() as c:
        asked = (await c.post("/api/v1/chat", json={"message": "who are our customers?", "session_id": "s-llm"}))
        asked_body = asked.json()
        assert asked_body["status"] == "awaiting_approval", asked_body
        interrupt_id = asked_body["events"][-1]["data"]["interrupt_id"]
        done = (await c.post("/api/v1/chat/s-llm/hitl", json={
            "interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]})).json()
        assert done["status"] == "completed", done
        usage = done["events"][-1]["data"]["token_usage"]
        m = await scrape(c)
    assert value(m, "dataagent_llm_calls_total", outcome="ok") == 2
    assert value(m, "dataagent_llm_calls_total", outcome="error") == 0
    assert value(m, "dataagent_llm_retries_total") == 1
    assert value(m, "dataagent_llm_call_duration_seconds_count") == 2
    assert value(m, "dataagent_llm_tokens_total", kind="prompt") == usage["prompt_tokens"]
    assert value(m, "dataagent_llm_tokens_total", kind="completion") == usage["completion_tokens"]
    assert value(m, "dataagent_sql_statements_total", type="select", outcome="ran") == 1

    spans = list(exporter.get_finished_spans())
    [run] = [s for s in spans if s.name == "dataagent.run"]
    calls = [s for s in spans if s.name == "dataagent.llm"]
    assert len(calls) == 2
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in calls)
    assert all(s.attributes and s.attributes["gen_ai.request.model"] == "fake-model" for s in calls)


async def test_an_llm_call_that_fails_for_good_is_counted_as_an_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_error(401)  # not transient: no retry
    async with live_server(llm_settings(fake_openai)) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "hello?"})
        assert r.json()["status"] == "failed"
        m = await scrape(c)
    assert value(m, "dataagent_llm_calls_total", outcome="error") == 1
    assert value(m, "dataagent_llm_retries_total") == 0
    assert value(m, "dataagent_answers_ended_total", status="failed", reason="agent_error") == 1
