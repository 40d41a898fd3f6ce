"""The audit trail of the LLM engine's run_sql (the read-only screen is its own path), through the real core."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from dataagent.adapters.agents.llm import LlmConfig, OpenAiEngine
from dataagent.adapters.agents.sql import SqlDatabase, build_demo_database, sqlite_url
from dataagent.adapters.memory.audit import InMemoryAuditLog
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.audit import AuditTrail
from dataagent.domain.audit import AuditQuery, AuditRecord, sql_hash
from tests.fakes.openai_server import FakeOpenAI
from tests.unit.harness import Core, build_core

USER = "alice"


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("demo") / "demo.sqlite3")
    build_demo_database(path)
    return path


@pytest_asyncio.fixture
async def audited(fake_openai: FakeOpenAI, demo_path: str) -> AsyncIterator[tuple[Core, InMemoryAuditLog]]:
    log = InMemoryAuditLog()
    config = LlmConfig(model="fake-model", base_url=fake_openai.base_url, api_key="sk-test", timeout_s=5.0,
                       retries=0)
    engine = OpenAiEngine(config, SqlDatabase(sqlite_url(demo_path)), hitl_policy="writes",
                          audit=AuditTrail(log, SystemClock(), UuidIdGenerator()))
    yield build_core(engine), log
    await engine.close()


async def all_records(log: InMemoryAuditLog) -> list[AuditRecord]:
    return (await log.find(AuditQuery(limit=1000))).records


async def test_each_statement_of_a_run_has_its_record_and_the_read_only_screen_refuses_a_write(
    audited: tuple[Core, InMemoryAuditLog], fake_openai: FakeOpenAI,
) -> None:
    core, log = audited
    fake_openai.add_tool_calls([("c1", "run_sql", {"sql": "DELETE FROM customers"}),
                                ("c2", "run_sql", {"sql": "SELECT count(*) AS n FROM customers"})])
    fake_openai.add_text("Done.")

    outcome = await core.chat.chat(USER, "clean up and count", "s1")

    assert outcome.status == "completed"
    refused, ran = await all_records(log)
    assert (refused.sql, refused.outcome, refused.decision, refused.decided_by) == (
        "DELETE FROM customers", "refused", "refused_guard", "server")
    assert refused.read_only is False and refused.statement_type == "DELETE" and refused.reason
    assert refused.executed_sql is None and refused.rows is None
    assert (ran.outcome, ran.decision, ran.rows, ran.tables) == ("ran", "auto_approve", 1, ("customers",))
    assert {r.run_id for r in (refused, ran)} == {outcome.run_id} and {r.principal for r in (refused, ran)} == {USER}
    assert all(r.sql_hash == sql_hash(r.sql) and r.session_id == "s1" for r in (refused, ran))


async def test_a_model_call_with_no_sql_leaves_no_record(
    audited: tuple[Core, InMemoryAuditLog], fake_openai: FakeOpenAI,
) -> None:
    core, log = audited
    fake_openai.add_tool_calls([("c1", "run_sql", {"query": "SELECT 1"}), ("c2", "list_tables", {})])
    fake_openai.add_text("Nothing ran.")

    assert (await core.chat.chat(USER, "anything", "s2")).status == "completed"
    assert await all_records(log) == []
