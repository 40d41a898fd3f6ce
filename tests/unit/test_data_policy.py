"""Data policies per principal: the file, the statement checks and rewrite, and runs on the SQLite demo database."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.llm import LlmConfig, OpenAiEngine
from dataagent.adapters.agents.sql import (
    DataPolicy,
    DataPolicyError,
    PolicyEntry,
    PolicyRefusal,
    Schema,
    SqlDatabase,
    TableRule,
    build_demo_database,
    enforce,
    load_data_policy,
    sqlite_url,
)
from dataagent.application.chat import RunOutcome
from dataagent.entrypoints.engines import EngineLoadError, check_engine_settings
from dataagent.entrypoints.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.unit.harness import build_core

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "data-policy.yaml")
SCHEMA = Schema({
    "customers": ("id", "name", "city", "country", "signup_date"),
    "products": ("id", "name", "category", "price"),
    "orders": ("id", "customer_id", "product_id", "quantity", "order_date", "status"),
})


@pytest.fixture(scope="module")
def policy() -> DataPolicy:
    return load_data_policy(EXAMPLE)


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("policy") / "demo.sqlite3")
    build_demo_database(path)
    return path


def rewrite(policy: DataPolicy, sql: str, principal: str = "alice", dialect: str = "sqlite") -> str:
    entry = policy.for_principal(principal)
    assert entry is not None
    return enforce(sql, dialect, entry, SCHEMA)


# ------------------------------------------------------------------------------------------------ the file


def test_the_example_names_an_entry_per_principal_group_and_default(policy: DataPolicy) -> None:
    assert [policy.for_principal(p).name for p in ("alice", "bob", "carol", "dave")] == [  # type: ignore[union-attr]
        "analysts", "analysts", "carol", "default"]


def test_the_readme_shows_the_example_file_whole() -> None:
    readme = (Path(EXAMPLE).parents[1] / "README.md").read_text()

    assert f"```yaml\n{Path(EXAMPLE).read_text()}```" in readme


def test_without_a_default_a_principal_named_nowhere_has_no_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("policies:\n  alice:\n    tables: {}\n")

    assert load_data_policy(str(path)).for_principal("dave") is None


BAD_FILES = [
    ("policies: [a]\n", "line 1, policies: must be a mapping"),
    ("policies:\n  a:\n    tables:\n      t:\n        rows: \"x = (\"\n",
     "line 5, policies.a.tables.t.rows: not a SQL"),
    ("policies:\n  a:\n    tables:\n      t:\n        rows: \"id IN (SELECT id FROM u)\"\n",
     "line 5, policies.a.tables.t.rows: a row filter may not read other tables"),
    ("policies:\n  a:\n    tables:\n      t:\n        colums: [x]\n",
     "line 5, policies.a.tables.t.colums: unknown key"),
    ("policies:\n  a:\n    tabels: {}\n", "line 3, policies.a.tabels: unknown key"),
    ("policies:\n  a: {tables: {}}\n  b: {tables: {}}\ngroups:\n  a: [x]\n  b: [x]\n",
     "line 6, groups.b: x is also in group a"),
    ("policies:\n  a:\n    tables:\n      t: {columns: 3}\n", "line 4, policies.a.tables.t.columns: must be a list"),
    ("policies: {a: {tables: {}}\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_file_is_one_line_naming_the_place(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)

    with pytest.raises(DataPolicyError) as caught:
        load_data_policy(str(path))

    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_bad_file_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("policies: 3\n")

    with pytest.raises(EngineLoadError, match=r"^DATAAGENT_DATA_POLICY=.*policy.yaml: line 1, policies: must be"):
        check_engine_settings(Settings(data_policy=str(path)))


def test_a_missing_file_stops_start_up() -> None:
    with pytest.raises(EngineLoadError, match="DATAAGENT_DATA_POLICY=/nonexistent.yaml: cannot be read"):
        check_engine_settings(Settings(data_policy="/nonexistent.yaml"))


# ----------------------------------------------------------------------------------------- the statement


def test_a_filtered_table_becomes_a_filtered_subquery_under_its_alias(policy: DataPolicy) -> None:
    sql = rewrite(policy, "SELECT c.city FROM customers AS c")

    assert sql == ('SELECT c.city FROM (SELECT "id", "city", "country", "signup_date" FROM "customers" '
                   "WHERE country = 'China') AS c")


def test_every_reference_is_filtered_in_joins_ctes_subqueries_and_unions(policy: DataPolicy) -> None:
    sql = rewrite(policy, (
        "WITH recent AS (SELECT customer_id FROM orders) "
        "SELECT id FROM customers WHERE id IN (SELECT customer_id FROM recent) "
        "UNION SELECT o.customer_id FROM orders o JOIN customers c2 ON c2.id = o.customer_id"
    ))

    assert sql.count("WHERE country = 'China'") == 2 and sql.count("WHERE status <> 'cancelled'") == 2


@pytest.mark.parametrize("sql", [
    'SELECT * FROM "customers"', "SELECT * FROM [customers]", "SELECT * FROM CUSTOMERS",
    "SELECT * FROM customers -- WHERE 1 = 0", "SELECT * FROM /* orders */ customers",
])
def test_quoted_names_and_comments_are_filtered_too(policy: DataPolicy, sql: str) -> None:
    assert "WHERE country = 'China'" in rewrite(policy, sql)


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT price FROM products", "column the data policy does not allow"),
    ("SELECT * FROM orders", "does not allow the table orders"),
    ("SELECT * FROM main.products", "schema-qualified names"),
    ("SELECT * FROM sqlite_master", "system catalogs"),
    ("SELECT * FROM information_schema.tables", "system catalogs"),
    ("SELECT * FROM pg_catalog.pg_tables", "system catalogs"),
    ("SELECT * FROM pragma_table_info('customers')", "table functions"),
    ("SELECT * FROM json_each('[1]')", "table functions"),
    ("WITH products AS (SELECT * FROM customers) SELECT * FROM products", "CTE may not be named like"),
    ("WITH x AS (SELECT 1) SELECT * FROM x, customers", "does not allow the table customers"),
    ("SELECT * FROM products WHERE", "could not be parsed"),
    ("DELETE FROM products", "only a single SELECT"),
    ("SELECT 1; SELECT 2", "only a single SELECT"),
])
def test_statements_outside_the_policy_are_refused_with_the_reason(policy: DataPolicy, sql: str, reason: str) -> None:
    with pytest.raises(PolicyRefusal, match=reason):
        rewrite(policy, sql, principal="dave")


@pytest.mark.parametrize("sql", [
    "SELECT name FROM customers", "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id",
    "SELECT city FROM customers WHERE name LIKE 'A%'", "SELECT (SELECT MAX(name) FROM customers) AS n",
])
def test_a_column_outside_the_allow_list_is_refused_in_any_place(policy: DataPolicy, sql: str) -> None:
    with pytest.raises(PolicyRefusal, match="column the data policy does not allow .*customers: id, city"):
        rewrite(policy, sql)


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT * FROM (products p JOIN products q ON q.id = p.id)", "parenthesized joins"),
    ("SELECT * FROM products PARTITION (p0)", "PARTITION"),
    ("SELECT * FROM products TABLESAMPLE (10 PERCENT)", "SAMPLE"),
    ("SELECT * FROM products FOR SYSTEM_TIME ALL", "VERSION"),
    ("SELECT * FROM products, LATERAL (SELECT 1) AS x", "only tables, subqueries and VALUES"),
])
def test_what_the_rewrite_would_drop_from_a_table_reference_is_refused(
    policy: DataPolicy, sql: str, reason: str
) -> None:
    with pytest.raises(PolicyRefusal, match=reason):
        rewrite(policy, sql, principal="dave", dialect="mysql")


def test_a_row_filter_the_dialect_cannot_read_refuses_the_statement() -> None:
    entry = PolicyEntry("p", {"products": TableRule(None, "category = 'a' ||| 'b'")})

    with pytest.raises(PolicyRefusal, match="row filter of products cannot be read"):
        enforce("SELECT id FROM products", "sqlite", entry, SCHEMA)


def test_select_star_is_expanded_to_the_allowed_columns(policy: DataPolicy) -> None:
    sql = rewrite(policy, "SELECT * FROM products", principal="dave")

    assert sql == 'SELECT * FROM (SELECT "id", "name", "category" FROM "products") AS products'


# ------------------------------------------------------------------------------------ runs on SQLite


def demo_engine(demo_path: str, policy: DataPolicy) -> DemoEngine:
    database = SqlDatabase(sqlite_url(demo_path))
    return DemoEngine(chunks=2, delay_ms=0, database=database, data_policy=policy)


def of(outcome: RunOutcome, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in outcome.events if e.event_type == kind]


def expected(demo_path: str, sql: str) -> list[list[Any]]:
    with sqlite3.connect(demo_path) as conn:
        return [list(row) for row in conn.execute(sql).fetchall()]


async def test_a_run_on_sqlite_shows_both_statements_and_returns_only_allowed_rows(
    demo_path: str, policy: DataPolicy
) -> None:
    engine = demo_engine(demo_path, policy)
    core = build_core(engine)
    question = "SELECT c.country, COUNT(*) AS n FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY 1"

    waiting = await core.chat.chat("alice", question, "s1")
    args = of(waiting, "hitl")[0]["action"]["args"]
    done = await core.chat.decide_and_wait("alice", "s1", None, [{"type": "approve"}])
    await engine.close()

    assert args["sql"] == question and args["policy"] == "analysts"
    assert "WHERE country = 'China'" in args["executed_sql"]
    table = of(done, "tool_result")[0]["data"]["table"]
    assert table["rows"] == expected(demo_path, (
        "SELECT c.country, COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE c.country = 'China' AND o.status <> 'cancelled' GROUP BY 1"))


async def test_a_run_on_sqlite_refuses_before_approval(demo_path: str, policy: DataPolicy) -> None:
    engine = demo_engine(demo_path, policy)
    core = build_core(engine)

    outcome = await core.chat.chat("dave", "SELECT name, price FROM products", "s1")
    await engine.close()

    assert outcome.status == "completed" and not of(outcome, "hitl")
    result = of(outcome, "tool_result")[0]
    assert result["status"] == "error" and "column the data policy does not allow" in result["result"]


async def test_an_edited_statement_is_checked_and_rewritten_again_for_the_principal(
    demo_path: str, policy: DataPolicy
) -> None:
    engine = demo_engine(demo_path, policy)
    core = build_core(engine)
    await core.chat.chat("alice", "SELECT city FROM customers", "s1")

    refused = await core.chat.decide_and_wait(
        "alice", "s1", None, [{"type": "edit", "args": {"sql": "SELECT name FROM customers"}}])
    await core.chat.chat("alice", "SELECT city FROM customers", "s1")
    edited = await core.chat.decide_and_wait(
        "alice", "s1", None, [{"type": "edit", "args": {"sql": "SELECT name, price FROM products WHERE id = 2"}}])
    await engine.close()

    result = of(refused, "tool_result")[0]
    assert result["status"] == "error" and "column the data policy does not allow" in result["result"]
    assert of(edited, "tool_result")[0]["data"]["table"]["columns"] == ["name", "price"]


async def test_a_schema_that_cannot_be_read_refuses_the_statement(tmp_path: Path, policy: DataPolicy) -> None:
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"not a database" * 100)
    engine = demo_engine(str(broken), policy)
    core = build_core(engine)

    outcome = await core.chat.chat("dave", "SELECT name FROM products", "s1")
    await engine.close()

    result = of(outcome, "tool_result")[0]
    assert outcome.status == "completed" and not of(outcome, "hitl")
    assert result["status"] == "error" and "schema could not be read" in result["result"]


@pytest_asyncio.fixture
async def llm(fake_openai: FakeOpenAI, demo_path: str, policy: DataPolicy) -> AsyncIterator[OpenAiEngine]:
    config = LlmConfig(model="m", base_url=fake_openai.base_url, api_key="k", timeout_s=5.0, retries=0)
    engine = OpenAiEngine(config, SqlDatabase(sqlite_url(demo_path)), data_policy=policy)
    yield engine
    await engine.close()


async def test_the_llm_engine_sees_only_allowed_tables_columns_and_rows(
    llm: OpenAiEngine, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_tool_calls([("t1", "list_tables", {}), ("t2", "describe_table", {"table": "customers"}),
                                ("t3", "describe_table", {"table": "orders"})])
    fake_openai.add_tool_calls([("t4", "run_sql", {"sql": "SELECT name FROM customers"})])
    fake_openai.add_text("done")

    outcome = await build_core(llm).chat.chat("alice", "who?", "s1")

    results = {r["tool_call_id"]: r["result"] for r in of(outcome, "tool_result")}
    assert results["t1"] == "Tables: customers, orders, products"
    assert "- city" in results["t2"] and "- name" not in results["t2"] and "China" in results["t2"]
    assert "USA" not in results["t2"]
    assert "status" in results["t3"]
    assert "column the data policy does not allow" in results["t4"]
    sent = [m["content"] for m in fake_openai.requests[-1].messages if m["role"] == "tool"]
    assert any("column the data policy does not allow" in text for text in sent)


async def test_the_llm_engine_hides_tables_outside_the_policy(llm: OpenAiEngine, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_tool_calls([("t1", "list_tables", {}), ("t2", "describe_table", {"table": "customers"})])
    fake_openai.add_text("done")

    outcome = await build_core(llm).chat.chat("dave", "what?", "s1")

    results = {r["tool_call_id"]: r["result"] for r in of(outcome, "tool_result")}
    assert results["t1"] == "Tables: products"
    assert "does not allow the table customers" in results["t2"]
