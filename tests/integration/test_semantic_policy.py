"""The business context under a data policy: GET /api/v1/schema and the model's prompt show only what the
caller's entry allows (the same tables and columns as list_tables and describe_table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.support import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "semantic.yaml")
POLICY = """
policies:
  alice:
    tables:
      orders:
        columns: [id, product_id, status]
      products: {}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY, encoding="utf-8")
    return str(path)


async def _schema(settings: Any, key: str | None = None) -> dict[str, Any]:
    async with live_server(settings) as srv, (srv.client(key) if key else srv.client()) as client:
        r = await client.get("/api/v1/schema")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_the_schema_route_shows_only_the_tables_and_columns_the_policy_allows(policy_file: str) -> None:
    body = await _schema(make_settings(semantic_file=EXAMPLE, data_policy=policy_file))
    tables = {t["name"]: t for t in body["tables"]}
    assert list(tables) == ["orders", "products"]
    assert [c["name"] for c in tables["orders"]["columns"]] == ["id", "product_id", "status"]
    assert [c["name"] for c in tables["products"]["columns"]] == ["id", "name", "category", "price"]
    assert tables["orders"]["description"].startswith("One row per order line")
    assert [(j["from"], j["to"]) for j in body["relationships"]] == [("orders.product_id", "products.id")]


async def test_a_principal_no_entry_applies_to_sees_the_whole_schema(policy_file: str) -> None:
    body = await _schema(make_settings(semantic_file=EXAMPLE, data_policy=policy_file), KEY_B)
    assert [t["name"] for t in body["tables"]] == ["customers", "orders", "products"]
    assert len(body["relationships"]) == 2


async def test_the_models_context_names_no_table_or_column_outside_the_policy(
    fake_openai: FakeOpenAI, policy_file: str,
) -> None:
    fake_openai.add_tool_calls([("call_dt", "describe_table", {"table": "orders"})])
    fake_openai.add_text("ok")
    settings = make_settings(
        agent="llm", llm_base_url=fake_openai.base_url, llm_api_key="sk-test", llm_model="fake-model",
        llm_timeout=10, semantic_file=EXAMPLE, data_policy=policy_file,
    )
    async with live_server(settings) as srv, srv.client() as client:
        r = await client.post("/api/v1/chat", json={"message": "What is in orders?"})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text

    first, second = fake_openai.requests
    system = first.messages[0]["content"]
    assert "Where the order is" in system and "Catalogue section" in system
    for hidden in ("registered customer", "Units ordered", "orders.customer_id", "Who ordered"):
        assert hidden not in system, hidden
    [described] = [m["content"] for m in second.messages if m.get("tool_call_id") == "call_dt"]
    assert "Joins: orders.product_id = products.id" in described
    assert "customer" not in described
