"""Data policies on the real MariaDB: generated queries, bypass attempts, and a run through the engine.

The oracle of the property: a second database holds exactly what the policy lets the principal see (the
allowed columns of the allowed rows). Every generated query, rewritten and run on the full database, must
return the same rows as the query itself run on that reduced one: so no row outside the row filters and no
column outside the allow-lists comes back, and what is inside the policy comes back unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataagent.adapters.agents.demo import DemoEngine
from dataagent.adapters.agents.sql import DataPolicy, SqlDatabase, SqlExecutionError, load_data_policy
from dataagent.adapters.agents.sql.scope import PolicyScope
from tests.mysqldb import admin_query, create_database, database_url, drop_database
from tests.unit.harness import build_core

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

POLICY = """
policies:
  north:
    tables:
      customers:
        columns: [id, name, region]
        rows: "region = 'north'"
      orders:
        columns: [id, customer_id, amount, region]
        rows: "amount >= 20 AND region <> 'east'"
"""
SCHEMA = [
    "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20), region VARCHAR(10), secret VARCHAR(20))",
    "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT, amount INT, region VARCHAR(10), note VARCHAR(20))",
]
REGIONS = ("north", "south", "east")
REDUCED = [
    "CREATE TABLE {r}.customers AS SELECT id, name, region FROM {f}.customers WHERE region = 'north'",
    "CREATE TABLE {r}.orders AS SELECT id, customer_id, amount, region FROM {f}.orders "
    "WHERE amount >= 20 AND region <> 'east'",
]


class Databases:
    """The full database under the policy, and the reduced one that holds what the policy allows."""

    def __init__(self, runner: asyncio.Runner, full: str, reduced: str, policy: DataPolicy) -> None:
        self.runner = runner
        self.full = SqlDatabase(database_url(full))
        self.reduced = SqlDatabase(database_url(reduced))
        self.scope = PolicyScope(self.full, policy)

    def rewritten(self, sql: str) -> str | None:
        """The statement as it runs for `north`, or None if refused."""
        analysis = self.runner.run(self.scope.apply(self.runner.run(self.full.analyse(sql)), "north"))
        return analysis.executed_sql if analysis.refusal is None else None

    def rows(self, database: SqlDatabase, sql: str) -> list[tuple[Any, ...]]:
        result = self.runner.run(database.run_query(sql))
        return sorted((tuple(row) for row in result.rows), key=repr)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(POLICY)
    with asyncio.Runner() as runner:
        full, reduced = runner.run(create_database("dataagent_policy")), runner.run(create_database("dataagent_pol_r"))
        try:
            runner.run(_seed(full, reduced))
            databases = Databases(runner, full, reduced, load_data_policy(str(path)))
            yield databases
            runner.run(databases.full.close())
            runner.run(databases.reduced.close())
        finally:
            runner.run(drop_database(full))
            runner.run(drop_database(reduced))


async def _seed(full: str, reduced: str) -> None:
    for statement in SCHEMA:
        await admin_query(statement.replace("TABLE ", f"TABLE `{full}`.", 1))
    customers = [(i, f"c{i}", REGIONS[i % 3], f"s{i}") for i in range(1, 31)]
    orders = [(i, 1 + (i * 7) % 30, (i * 13) % 50, REGIONS[(i // 2) % 3], f"n{i}") for i in range(1, 121)]
    for table, rows in (("customers", customers), ("orders", orders)):
        marks = ", ".join(["%s"] * len(rows[0]))
        for row in rows:
            await admin_query(f"INSERT INTO `{full}`.{table} VALUES ({marks})", row)
    for statement in REDUCED:
        await admin_query(statement.format(r=f"`{reduced}`", f=f"`{full}`"))


# ------------------------------------------------------------------------------------------ generated queries

ALLOWED = {"customers": ("id", "name", "region"), "orders": ("id", "customer_id", "amount", "region")}
HIDDEN = {"customers": "secret", "orders": "note"}


@st.composite
def sources(draw: st.DrawFn, table: str) -> tuple[str, str]:
    """`table` as written (quoted or not, with or without an alias) and the name to qualify columns with."""
    name = draw(st.sampled_from([table, f"`{table}`"]))
    alias = draw(st.sampled_from(["", "t", "x1"]))
    return (f"{name} AS {alias}" if alias else name), (alias or table)


@st.composite
def simple(draw: st.DrawFn, table: str | None = None) -> str:
    table = table or draw(st.sampled_from(sorted(ALLOWED)))
    source, ref = draw(sources(table))
    columns = draw(st.lists(st.sampled_from(ALLOWED[table]), min_size=1, max_size=3, unique=True))
    select = draw(st.sampled_from(["*", ", ".join(f"{ref}.{c}" for c in columns)]))
    where = draw(st.sampled_from(["", f" WHERE {ref}.id > 5", f" WHERE {ref}.region IN ('north', 'south')"]))
    return f"SELECT {select} FROM {source}{where}"


@st.composite
def queries(draw: st.DrawFn, depth: int = 0) -> str:
    shapes = ["simple", "join", "cte", "derived", "in", "union", "group", "scalar", "setops"]
    shape = draw(st.sampled_from(shapes + (["nested"] if depth < 2 else [])))
    if shape == "nested":  # a generated query inside a derived table, a CTE, or joined to a table
        inner = draw(queries(depth + 1))
        return draw(st.sampled_from([
            f"SELECT * FROM ({inner}) AS q{depth}",
            f"WITH w{depth} AS ({inner}) SELECT * FROM w{depth}",
            f"SELECT COUNT(*) FROM ({inner}) AS q{depth} JOIN customers AS z ON z.id > 25",
        ]))
    if shape == "setops":
        op = draw(st.sampled_from(["INTERSECT", "EXCEPT"]))
        return f"SELECT customer_id FROM orders {op} SELECT id FROM customers WHERE name LIKE 'c1%'"
    if shape == "simple":
        return draw(simple())
    if shape == "join":
        kind = draw(st.sampled_from(["JOIN", "LEFT JOIN"]))
        return (f"SELECT o.id, o.amount, c.name FROM orders o {kind} customers c ON c.id = o.customer_id "
                f"WHERE o.id < {draw(st.integers(10, 120))}")
    if shape == "cte":
        inner = draw(simple("orders"))
        return f"WITH picked AS ({inner}) SELECT * FROM picked"
    if shape == "derived":
        return f"SELECT * FROM ({draw(simple('customers'))}) AS d"
    if shape == "in":
        return ("SELECT id, name FROM customers WHERE id IN "
                f"(SELECT customer_id FROM orders WHERE amount > {draw(st.integers(0, 50))})")
    if shape == "union":
        union = draw(st.sampled_from(["UNION", "UNION ALL"]))
        return f"SELECT id FROM customers {union} SELECT customer_id FROM `orders` AS o WHERE o.amount < 40"
    if shape == "group":
        return "SELECT region, COUNT(*) AS n, SUM(amount) AS total FROM orders GROUP BY region"
    return "SELECT c.id, (SELECT MAX(o.amount) FROM orders o WHERE o.customer_id = c.id) AS top FROM customers c"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=queries())
def test_property_a_rewritten_query_returns_exactly_what_the_policy_allows(dbs: Databases, sql: str) -> None:
    executed = dbs.rewritten(sql)

    assert executed is not None, sql
    assert dbs.rows(dbs.full, executed) == dbs.rows(dbs.reduced, sql)


FILTERS = {
    "customers": lambda row: row["region"] == "north",
    "orders": lambda row: row["amount"] >= 20 and row["region"] != "east",
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from(sorted(FILTERS)), data=st.data())
def test_property_every_row_read_of_a_table_is_inside_its_row_filter(
    dbs: Databases, table: str, data: st.DataObject
) -> None:
    inner = data.draw(simple(table))
    sql = data.draw(st.sampled_from([f"SELECT * FROM {table} WHERE EXISTS (SELECT 1 FROM ({inner}) AS s)",
                                     f"WITH s AS (SELECT * FROM {table}) SELECT * FROM s",
                                     f"SELECT * FROM {table} UNION ALL SELECT * FROM `{table}`"]))
    executed = dbs.rewritten(sql)
    assert executed is not None, sql

    result = dbs.runner.run(dbs.full.run_query(executed))

    assert tuple(result.columns) == ALLOWED[table]
    rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    assert rows and all(FILTERS[table](row) for row in rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=simple(), table=st.sampled_from(sorted(HIDDEN)), star=st.booleans())
def test_property_a_hidden_column_is_refused_or_unknown(dbs: Databases, sql: str, table: str, star: bool) -> None:
    sql = f"SELECT {HIDDEN[table]} FROM {table} WHERE id IN ({sql.replace('*', 'id', 1) if star else 'id'})"
    executed = dbs.rewritten(sql)

    if executed is not None:  # not seen by the static check: the database does not know the column
        with pytest.raises(SqlExecutionError, match="Unknown column"):
            dbs.rows(dbs.full, executed)


BYPASSES = [
    "SELECT * FROM information_schema.columns", "SELECT * FROM INFORMATION_SCHEMA.`TABLES`",
    "SELECT * FROM `information_schema`.tables", "SELECT * FROM mysql.user", "SELECT * FROM {db}.customers",
    "SELECT * FROM `{db}`.`orders`", "WITH customers AS (SELECT * FROM orders) SELECT * FROM customers",
    "WITH `Orders` AS (SELECT 1 AS id) SELECT * FROM orders",
    "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (a INT PATH '$')) AS j",
    "SELECT secret FROM customers", "SELECT c.note FROM orders c", "SELECT * FROM customers /*! WHERE 1 */",
    "SELECT * FROM performance_schema.threads", "SHOW TABLES", "DESCRIBE customers",
]


@pytest.mark.parametrize("sql", BYPASSES)
def test_known_bypass_attempts_are_refused(dbs: Databases, sql: str) -> None:
    db = dbs.full.url.rsplit("/", 1)[-1]

    assert dbs.rewritten(sql.format(db=db)) is None


def test_comments_do_not_hide_anything_from_the_rewrite(dbs: Databases) -> None:
    executed = dbs.rewritten("SELECT id FROM customers -- WHERE region = 'south'\n WHERE id > 0 /* secret */")

    assert executed is not None
    assert dbs.rows(dbs.full, executed) == dbs.rows(dbs.reduced, "SELECT id FROM customers WHERE id > 0")


async def test_a_run_on_mariadb_holds_the_policy_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    full = await create_database("dataagent_policy_run")
    reduced = await create_database("dataagent_policy_rr")
    try:
        await _seed(full, reduced)
        engine = DemoEngine(chunks=1, delay_ms=0, database=SqlDatabase(database_url(full)),
                            data_policy=load_data_policy(str(path)))
        core = build_core(engine)
        sql = "SELECT o.id, o.amount, c.name FROM orders o JOIN customers c ON c.id = o.customer_id"
        waiting = await core.chat.chat("north", sql, "s1")
        done = await core.chat.decide_and_wait("north", "s1", None, [{"type": "approve"}])
        await engine.close()
        [hitl] = [e.data for e in waiting.events if e.event_type == "hitl"]
        [result] = [e.data for e in done.events if e.event_type == "tool_result"]
        check = SqlDatabase(database_url(reduced))
        want = (await check.run_query(sql)).rows
        await check.close()
    finally:
        await drop_database(full)
        await drop_database(reduced)
    assert hitl["action"]["args"]["sql"] == sql and "amount >= 20" in hitl["action"]["args"]["executed_sql"]
    assert sorted(map(tuple, result["data"]["table"]["rows"])) == sorted(map(tuple, want)) and want
