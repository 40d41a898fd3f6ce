"""The business context end to end: what the model receives, GET /api/v1/schema, and a bad file at start-up."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from dataagent.adapters.agents.sql.context import CUT_NOTE
from tests.fakes.openai_server import FakeOpenAI
from tests.support import KEY_A, cli_command, free_port, live_server, make_settings, server_env

pytestmark = pytest.mark.integration

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "semantic.yaml")


def llm_settings(fake: FakeOpenAI, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "agent": "llm", "llm_base_url": fake.base_url, "llm_api_key": "sk-test", "llm_model": "fake-model",
        "llm_timeout": 10, "semantic_file": EXAMPLE,
    }
    return make_settings(**(values | overrides))


def _tool_message(messages: list[dict[str, Any]], call_id: str) -> str:
    [content] = [m["content"] for m in messages if m["role"] == "tool" and m.get("tool_call_id") == call_id]
    return str(content)


async def test_the_models_requests_carry_the_semantic_descriptions(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_tool_calls([("call_dt", "describe_table", {"table": "orders"})])
    fake_openai.add_text("Revenue counts completed and shipped orders.")
    async with live_server(llm_settings(fake_openai)) as srv, srv.client() as client:
        r = await client.post("/api/v1/chat", json={"message": "What counts as revenue?"})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text

    first, second = fake_openai.requests
    system = first.messages[0]
    assert system["role"] == "system"
    for words in ("One row per registered customer", "also called: purchases, sales, transactions",
                  "orders.customer_id = customers.id", "Term 'revenue' (also: sales, turnover)",
                  "'completed', 'shipped', 'pending', 'cancelled'"):
        assert words in system["content"], words
    described = _tool_message(second.messages, "call_dt")
    assert "- status TEXT NOT NULL — Where the order is; only completed and shipped orders count" in described
    assert "Joins: orders.customer_id = customers.id" in described


async def test_the_context_takes_at_most_half_the_history_budget(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_text("ok")
    async with live_server(llm_settings(fake_openai, llm_history_chars=600)) as srv, srv.client() as client:
        r = await client.post("/api/v1/chat", json={"message": "Hello"})
        assert r.status_code == 200, r.text
    system = fake_openai.requests[0].messages[0]["content"]
    context = system[system.index("Business context"):]
    assert len(context) <= 300 and context.endswith(CUT_NOTE)


async def test_the_schema_route_joins_the_database_and_the_file() -> None:
    async with live_server(make_settings(semantic_file=EXAMPLE)) as srv, srv.client() as client:
        r = await client.get("/api/v1/schema")
        anonymous = await srv.client(key=None).get("/api/v1/schema")
    assert r.status_code == 200, r.text
    body = r.json()
    tables = {t["name"]: t for t in body["tables"]}
    assert list(tables) == ["customers", "orders", "products"]
    orders = tables["orders"]
    assert orders["description"].startswith("One row per order line")
    assert orders["synonyms"] == ["purchases", "sales", "transactions"]
    status = next(c for c in orders["columns"] if c["name"] == "status")
    assert status == {
        "name": "status", "type": "TEXT", "nullable": False,
        "description": "Where the order is; only completed and shipped orders count as sales.",
        "synonyms": [], "examples": ["completed", "shipped", "pending", "cancelled"],
    }
    undescribed = next(c for c in orders["columns"] if c["name"] == "id")
    assert undescribed["type"] == "INTEGER" and undescribed["description"] == ""
    assert body["relationships"][0] == {
        "from": "orders.customer_id", "to": "customers.id", "description": "each order belongs to one customer"}
    assert [t["name"] for t in body["terms"]] == ["revenue", "active customer"]
    assert anonymous.status_code == 401


async def test_without_a_file_the_schema_route_lists_the_database_alone() -> None:
    async with live_server(make_settings()) as srv, srv.client() as client:
        body = (await client.get("/api/v1/schema")).json()
    assert [t["name"] for t in body["tables"]] == ["customers", "orders", "products"]
    assert all(c["description"] == "" for t in body["tables"] for c in t["columns"])
    assert body["relationships"] == [] and body["terms"] == []


def test_a_bad_semantic_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("tables:\n  orders:\n    columns:\n      - name: id\n      - name: total\n      - {}\n",
                   encoding="utf-8")
    env = server_env(DATAAGENT_SEMANTIC_FILE=str(bad), DATAAGENT_API_KEYS=f"a:{KEY_A}",
                     DATAAGENT_AGENT="demo", PATH="/usr/bin:/bin")
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(free_port())]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines == ["dataagent-server: semantic file x.yaml: tables.orders.columns[2].name: Field required"]
