"""OpenTelemetry tracing, through the SDK's in-memory exporter: one answer with an approved SQL statement gives a
request span, the run's span under it (its task carries the trace context), and under the run the SQL statement
and the store writes, with the session, run and request ids as attributes."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.transport import in_memory_hub
from dataagent.adapters.observability.tracing import OtelTracing, tracing_from_environment
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.chat import ChatService
from dataagent.application.runs import RunManager
from dataagent.application.telemetry import Attributes, NoTracing, Tracing
from tests.integration.test_cli import child_env, running
from tests.support import KEY_A, cli_command, free_port, live_server, make_settings, wait_healthy

pytestmark = pytest.mark.integration


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_an_approved_sql_answer_yields_request_run_sql_and_store_spans_with_their_ids() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with live_server(make_settings(), overrides={"tracing": OtelTracing(provider)}) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "SELECT * FROM customers", "session_id": "s-trace"},
                         headers={"X-Request-ID": "req-trace-1"})
        asked = r.json()
        assert asked["status"] == "awaiting_approval", asked
        interrupt_id = asked["events"][-1]["data"]["interrupt_id"]
        r = await c.post("/api/v1/chat/s-trace/hitl", headers={"X-Request-ID": "req-trace-2"},
                         json={"interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]})
        assert r.json()["status"] == "completed"
    spans = list(exporter.get_finished_spans())

    [ask] = [s for s in named(spans, "HTTP POST") if s.attributes and s.attributes["request_id"] == "req-trace-1"]
    [decide] = [s for s in named(spans, "HTTP POST") if s.attributes and s.attributes["request_id"] == "req-trace-2"]
    assert ask.attributes is not None and ask.attributes["url.path"] == "/api/v1/chat"
    [run] = named(spans, "dataagent.run")
    assert run.attributes == {"session_id": "s-trace", "run_id": asked["run_id"]}
    assert parent_of(run) == ask.context.span_id and run.context.trace_id == ask.context.trace_id
    [sql] = named(spans, "dataagent.sql")
    assert parent_of(sql) == run.context.span_id and sql.context.trace_id == ask.context.trace_id
    assert sql.attributes is not None and sql.attributes["run_id"] == asked["run_id"]
    assert sql.attributes["db.operation"] == "SELECT"

    appends = named(spans, "dataagent.store.append_message")
    under_ask = [s for s in appends if parent_of(s) == ask.context.span_id]  # the question, stored by start_run
    under_run = [s for s in appends if parent_of(s) == run.context.span_id]  # the tool result and the answer
    assert len(under_ask) == 1 and len(under_run) == 2
    assert all(s.attributes and s.attributes["session_id"] == "s-trace" for s in appends)
    assert any(s.name == "dataagent.store.save_interrupt" and parent_of(s) == run.context.span_id for s in spans)
    assert decide.context.trace_id != ask.context.trace_id  # the decision is its own request
    assert not named(spans, "dataagent.llm")  # the demo engine calls no LLM


NO_SDK = """
import sys


class NoOpenTelemetrySdk:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, NoOpenTelemetrySdk())
"""


async def test_without_the_otel_extra_the_server_starts_answers_and_traces_nothing(tmp_path: Path) -> None:
    """The OpenTelemetry SDK made unimportable (FastAPI brings opentelemetry-api, the extra adds the SDK), as if
    the extra were not installed; the OTEL_* variable that would turn tracing on is set all the same."""
    (tmp_path / "sitecustomize.py").write_text(NO_SDK)
    env = child_env(API_KEYS=f"alice:{KEY_A}", AGENT="demo", DEMO_CHUNKS="3", DEMO_CHUNK_DELAY_MS="1")
    env |= {"PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}", "OTEL_TRACES_EXPORTER": "console"}
    port = free_port()
    with running(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], env, port) as server:
        wait_healthy(server)
        async with server.client() as c:
            r = await c.post("/api/v1/chat", json={"message": "hello"})
            assert r.status_code == 200 and r.json()["status"] == "completed"
    assert "Traceback" not in server.text() and '"trace_id"' not in server.text()  # no console span either


def test_tracing_follows_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert isinstance(tracing_from_environment(), NoTracing)  # no exporter named: nothing traced
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert isinstance(tracing_from_environment(), NoTracing)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    tracing = tracing_from_environment()
    assert isinstance(tracing, OtelTracing)
    tracing.close()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert isinstance(tracing_from_environment(), NoTracing)


class CountingTracing(Tracing):
    """Opens no span; counts the spans asked for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def span(self, name: str, attributes: Attributes, current: bool = True) -> AbstractContextManager[object]:
        self.names.append(name)
        return contextlib.nullcontext()


async def test_a_run_asks_for_one_span_whatever_its_length_and_its_task_is_the_drive_itself() -> None:
    tracing = CountingTracing()
    repo, broker, clock, ids = InMemorySessionRepository(), in_memory_hub(), SystemClock(), UuidIdGenerator()
    runs = RunManager(repo, broker, DemoEngine(chunks=500, delay_ms=0), clock, ids, tracing=tracing)
    chat = ChatService(repo, broker, runs, clock, ids)
    run = await chat.start("alice", "hello", "s1")
    task = runs._runs[run.run_id].task  # noqa: SLF001 - the task a run is
    assert task is not None and task.get_coro().__qualname__ == "RunManager._drive"  # no wrapper per step
    await runs.wait_finished(run.run_id)
    assert tracing.names == ["dataagent.run"]  # 500 chunks, one span: nothing per token
