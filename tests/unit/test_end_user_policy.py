"""Data policies for end users (X-User-ID): an entry or a group member named `principal:end_user`; an end user
named nowhere gets its principal's entry; one end user's entry never applies to another's run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.sql import DataPolicy, SqlDatabase, build_demo_database, load_data_policy, sqlite_url
from dataagent.application.chat import RunOutcome
from dataagent.domain.callers import Caller
from tests.unit.harness import build_core

POLICY = """\
groups:
  interns: ["backend:intern-1", "backend:intern-2"]
policies:
  backend:
    tables:
      products: {}
      customers: {}
  "backend:vip":
    tables:
      products: {}
      customers: {}
      orders: {}
  interns:
    tables:
      products:
        columns: [id, name]
"""


@pytest.fixture
def policy(tmp_path: Path) -> DataPolicy:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return load_data_policy(str(path))


def test_an_end_user_gets_its_own_entry_its_groups_or_else_its_principals(policy: DataPolicy) -> None:
    names = {who: policy.for_principal(who) for who in (
        "backend", "backend:vip", "backend:intern-2", "backend:someone", "frontend:vip")}
    assert {who: e.name if e else None for who, e in names.items()} == {
        "backend": "backend", "backend:vip": "backend:vip", "backend:intern-2": "interns",
        "backend:someone": "backend", "frontend:vip": None}


def of(outcome: RunOutcome, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in outcome.events if e.event_type == kind]


async def test_a_run_applies_the_entry_of_the_end_user_it_was_asked_for(tmp_path: Path, policy: DataPolicy) -> None:
    demo = str(tmp_path / "demo.sqlite3")
    build_demo_database(demo)
    engine = DemoEngine(chunks=2, delay_ms=0, database=SqlDatabase(sqlite_url(demo)), data_policy=policy)
    core = build_core(engine)

    vip = await core.chat.chat(Caller("backend", "vip"), "SELECT COUNT(*) FROM orders", "s-vip")
    other = await core.chat.chat(Caller("backend", "someone"), "SELECT COUNT(*) FROM orders", "s-other")
    intern = await core.chat.chat(Caller("backend", "intern-1"), "SELECT price FROM products", "s-intern")
    await engine.close()

    assert vip.status == "awaiting_approval" and of(vip, "hitl")[0]["action"]["args"]["policy"] == "backend:vip"
    for refused in (other, intern):
        result = of(refused, "tool_result")[0]
        assert result["status"] == "error" and result["result"].startswith("Refused: "), result
