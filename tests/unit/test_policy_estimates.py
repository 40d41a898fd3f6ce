"""The estimate under a data policy: it is that of the statement as it will run (the policy's rewrite)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import yaml

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.sql import DataPolicy, SqlDatabase, build_demo_database, sqlite_url
from dataagent.adapters.agents.sql.policy import parse_data_policy
from dataagent.adapters.agents.sql_step import EstimateRules
from dataagent.application.chat import RunOutcome
from tests.unit.harness import build_core

POLICY = """
policies:
  alice:
    tables:
      orders:
        rows: "customer_id = 1"
"""
WHOLE_TABLE = "SELECT id FROM orders"


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("estimates") / "demo.sqlite3")
    build_demo_database(path)
    return path


def engine(demo_path: str, max_rows: int | None = None) -> DemoEngine:
    policy: DataPolicy = parse_data_policy(yaml.compose(POLICY))
    return DemoEngine(chunks=2, delay_ms=0, database=SqlDatabase(sqlite_url(demo_path)), data_policy=policy,
                      estimates=EstimateRules(max_rows=max_rows))


def expected(demo_path: str, sql: str) -> list[list[Any]]:
    with sqlite3.connect(demo_path) as conn:
        return [list(row) for row in conn.execute(sql).fetchall()]


def of(outcome: RunOutcome, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in outcome.events if e.event_type == kind]


async def test_the_approval_shows_the_estimate_of_the_rewritten_statement(demo_path: str) -> None:
    demo = engine(demo_path)
    core = build_core(demo)

    restricted = await core.chat.chat("alice", WHOLE_TABLE, "s1")
    unrestricted = await core.chat.chat("bob", WHOLE_TABLE, "s2")
    await demo.close()

    args = of(restricted, "hitl")[0]["action"]["args"]
    assert "customer_id = 1" in args["executed_sql"]
    assert args["estimate"]["available"] is True and args["estimate"]["full_scans"] == []
    assert of(unrestricted, "hitl")[0]["action"]["args"]["estimate"]["full_scans"] == ["orders"]


async def test_the_row_limit_judges_the_statement_as_it_will_run(demo_path: str) -> None:
    demo = engine(demo_path, max_rows=50)
    core = build_core(demo)

    restricted = await core.chat.chat("alice", WHOLE_TABLE, "s1")
    unrestricted = await core.chat.chat("bob", WHOLE_TABLE, "s2")
    await demo.close()

    assert of(restricted, "hitl") and not of(restricted, "tool_result")
    refused = of(unrestricted, "tool_result")[0]
    assert not of(unrestricted, "hitl") and "DATAAGENT_SQL_MAX_ESTIMATED_ROWS" in refused["result"]


async def test_an_edit_goes_through_the_policy_and_the_estimate_again(demo_path: str) -> None:
    demo = engine(demo_path, max_rows=50)
    core = build_core(demo)
    await core.chat.chat("alice", "SELECT id FROM orders WHERE id = 1", "s1")

    edited = await core.chat.decide_and_wait(
        "alice", "s1", None, [{"type": "edit", "args": {"sql": "SELECT id, status FROM orders"}}])
    await demo.close()

    result = of(edited, "tool_result")[0]
    assert result["status"] == "success", result["result"]  # the whole table (300 rows) would be over 50
    assert result["data"]["table"]["rows"] == expected(demo_path, "SELECT id, status FROM orders WHERE customer_id = 1")


async def test_an_edit_outside_the_limit_after_the_rewrite_is_refused(demo_path: str) -> None:
    demo = engine(demo_path, max_rows=50)
    core = build_core(demo)
    await core.chat.chat("bob", "SELECT id FROM orders WHERE id = 1", "s1")

    edited = await core.chat.decide_and_wait(
        "bob", "s1", None, [{"type": "edit", "args": {"sql": "SELECT id, status FROM orders"}}])
    await demo.close()

    result = of(edited, "tool_result")[0]
    assert result["status"] == "error" and "DATAAGENT_SQL_MAX_ESTIMATED_ROWS" in result["result"]
