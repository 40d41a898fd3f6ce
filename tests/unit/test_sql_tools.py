"""SQL tools: static analysis, approval policy, the demo database and the bounded read-only SqlDatabase."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataagent.adapters.agents.sql import (
    DEMO_ROW_COUNTS,
    QueryResult,
    SqlAnalysis,
    SqlDatabase,
    SqlExecutionError,
    SqlRefusedError,
    SqlTimeoutError,
    SqlUnknownTableError,
    analyze_sql,
    build_demo_database,
    json_safe,
    needs_approval,
    sqlite_url,
)
from dataagent.adapters.agents.sql import database as database_module
from dataagent.adapters.agents.sql.dialects import DialectLike, MySQLNoBackslashEscapes, quoting_dialect

SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
    "SELECT count(*) FROM c"
)


# --- analysis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "dialect", "statement_type", "read_only"),
    [
        ("SELECT * FROM orders", "sqlite", "SELECT", True),
        ("SELECT id FROM orders UNION SELECT id FROM customers", None, "SELECT", True),
        ("WITH big AS (SELECT * FROM orders WHERE quantity > 2) SELECT count(*) FROM big", None, "SELECT",
         True),
        ("INSERT INTO orders (id) VALUES (1)", None, "INSERT", False),
        ("UPDATE orders SET quantity = 0", None, "UPDATE", False),
        ("DELETE FROM orders", None, "DELETE", False),
        ("CREATE TABLE t (a INT)", None, "CREATE", False),
        ("DROP TABLE orders", None, "DROP", False),
        ("ALTER TABLE orders ADD COLUMN note TEXT", None, "ALTER", False),
        ("TRUNCATE TABLE orders", "mysql", "TRUNCATE", False),
        ("SHOW TABLES", "mysql", "SHOW", True),
        ("SHOW search_path", "postgres", "SHOW", True),
        ("DESCRIBE orders", "mysql", "DESCRIBE", True),
        ("EXPLAIN SELECT * FROM orders", "mysql", "EXPLAIN", True),
        ("EXPLAIN QUERY PLAN SELECT * FROM orders", "sqlite", "EXPLAIN", True),
        ("EXPLAIN ANALYZE DELETE FROM orders", "postgres", "EXPLAIN", False),
        ("EXPLAIN ANALYZE DELETE FROM orders", "mysql", "EXPLAIN", False),
        ("PRAGMA query_only = OFF", "sqlite", "PRAGMA", False),
        ("SET autocommit = 1", "mysql", "SET", False),
        ("LOCK TABLES orders WRITE", "mysql", "LOCK", False),
        ("GRANT ALL ON orders TO someone", "mysql", "GRANT", False),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "sqlite", "ATTACH", False),
    ],
)
def test_statement_types(sql: str, dialect: str | None, statement_type: str, read_only: bool) -> None:
    analysis = analyze_sql(sql, dialect)
    assert (analysis.statement_type, analysis.read_only) == (statement_type, read_only)
    assert analysis.sql == sql
    assert analysis.statement_count == 1
    assert analysis.error is None
    assert (analysis.reason is None) == read_only


def test_write_hidden_in_a_cte_is_a_write() -> None:
    analysis = analyze_sql("WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone", "postgres")
    assert analysis.statement_type == "SELECT"
    assert not analysis.read_only
    assert "DELETE" in (analysis.reason or "")
    assert analysis.tables == ("orders",)


def test_several_statements_are_never_read_only() -> None:
    analysis = analyze_sql("SELECT 1; DELETE FROM orders", "sqlite")
    assert (analysis.statement_count, analysis.read_only, analysis.statement_type) == (2, False, "MULTIPLE")
    assert analysis.tables == ("orders",)
    assert analyze_sql("SELECT 1; SELECT 2").read_only is False
    assert analyze_sql("SELECT 1;").statement_count == 1


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT * INTO orders_copy FROM orders", "postgres"),
        ("SELECT count(*) INTO @n FROM orders", "mysql"),
        ("SELECT * FROM orders INTO OUTFILE '/tmp/orders.csv'", "mysql"),
        ("SELECT * INTO DUMPFILE '/tmp/x' FROM orders", "mysql"),
        ("SELECT * FROM orders FOR UPDATE", "mysql"),
        ("SELECT * FROM orders FOR SHARE", "postgres"),
        ("SELECT * FROM orders LOCK IN SHARE MODE", "mysql"),
    ],
)
def test_select_into_and_locking_are_not_read_only(sql: str, dialect: str) -> None:
    analysis = analyze_sql(sql, dialect)
    assert not analysis.read_only
    assert analysis.reason


@pytest.mark.parametrize(
    ("call", "dialect"),
    [
        ("sleep(5)", "mysql"), ("SLEEP(5)", "mysql"), ("benchmark(1000000, md5('x'))", "mysql"),
        ("load_file('/etc/passwd')", "mysql"), ("get_lock('a', 1)", "mysql"), ("release_lock('a')", "mysql"),
        ("pg_sleep(5)", "postgres"), ("pg_catalog.pg_sleep(5)", "postgres"),
        ("pg_read_file('/etc/passwd')", "postgres"), ("pg_read_binary_file('/etc/passwd')", "postgres"),
        ("lo_import('/etc/passwd')", "postgres"), ("lo_export(1, '/tmp/x')", "postgres"),
        ("dblink('host=x', 'DELETE FROM t')", "postgres"), ("pg_terminate_backend(1)", "postgres"),
        ("set_config('x.y', 'z', false)", "postgres"), ("nextval('s')", "postgres"),
        ("setval('s', 1)", "postgres"), ("writefile('/tmp/x', 'y')", "sqlite"),
        ("readfile('/etc/passwd')", "sqlite"), ("load_extension('evil')", "sqlite"),
    ],
)
def test_side_effect_functions_are_not_read_only(call: str, dialect: str) -> None:
    for sql in (f"SELECT {call}", f"SELECT id FROM orders WHERE id IN (SELECT {call})"):
        analysis = analyze_sql(sql, dialect)
        assert not analysis.read_only, sql
        assert "side effects" in (analysis.reason or "")


def test_words_inside_strings_and_comments_do_not_count() -> None:
    sql = "SELECT 'DELETE FROM orders; INTO OUTFILE sleep(1)' AS s /* DROP TABLE orders */ FROM orders"
    assert analyze_sql(sql, "mysql").read_only


@pytest.mark.parametrize("sql", ["SELEC * FROM orders", "SELECT * FROM", "SELECT 'unterminated", "SELECT (1"])
def test_parse_errors(sql: str) -> None:
    analysis = analyze_sql(sql, "sqlite")
    assert analysis.error
    assert "\x1b" not in analysis.error
    assert not analysis.read_only
    assert (analysis.statement_type, analysis.statement_count) == ("UNKNOWN", 0)


def test_empty_sql_is_an_error() -> None:
    for sql in ("", "  ", "-- only a comment", ";"):
        analysis = analyze_sql(sql)
        assert analysis.error and not analysis.read_only


def test_tables_are_sorted_and_leave_out_cte_names() -> None:
    sql = (
        "WITH recent AS (SELECT * FROM orders WHERE order_date > '2024-06-01'), "
        "spend AS (SELECT customer_id, sum(quantity) q FROM recent GROUP BY customer_id) "
        "SELECT c.name, s.q FROM spend s JOIN customers c ON c.id = s.customer_id "
        "WHERE c.id IN (SELECT customer_id FROM shop.orders)"
    )
    assert analyze_sql(sql, "sqlite").tables == ("customers", "orders", "shop.orders")


def test_as_args() -> None:
    analysis = analyze_sql("SELECT * FROM products JOIN orders ON orders.product_id = products.id")
    assert analysis.as_args() == {
        "sql": analysis.sql, "statement_type": "SELECT", "read_only": True, "tables": ["orders", "products"],
    }


_TABLE_COLUMNS = {
    "customers": ["id", "name", "city", "country", "signup_date"],
    "products": ["id", "name", "category", "price"],
    "orders": ["id", "customer_id", "product_id", "quantity", "order_date", "status"],
}
_literals = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    # Backslashes are left out: MySQL reads them as escapes, so "'\\'" would be an unterminated string.
    st.text(st.characters(exclude_characters="\\\x00"), max_size=20).map(
        lambda s: "'" + s.replace("'", "''") + "'"
    ),
)


@st.composite
def _selects(draw: st.DrawFn) -> str:
    table = draw(st.sampled_from(sorted(_TABLE_COLUMNS)))
    columns = _TABLE_COLUMNS[table]
    picked = draw(st.lists(st.sampled_from(columns), min_size=1, max_size=4, unique=True))
    select = ", ".join(picked) if draw(st.booleans()) else f"count(*), max({picked[0]})"
    sql = f"SELECT {select} FROM {table}"
    if draw(st.booleans()):
        op = draw(st.sampled_from(["=", "<>", "<", ">=", "LIKE"]))
        sql += f" WHERE {draw(st.sampled_from(columns))} {op} {draw(_literals)}"
    if select.startswith("count"):
        return sql
    if draw(st.booleans()):
        sql += f" ORDER BY {draw(st.sampled_from(picked))} {draw(st.sampled_from(['ASC', 'DESC']))}"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.integers(0, 1000))}"
    return sql


@st.composite
def _writes(draw: st.DrawFn) -> str:
    table = draw(st.sampled_from(sorted(_TABLE_COLUMNS)))
    column = draw(st.sampled_from(_TABLE_COLUMNS[table]))
    value = draw(_literals)
    return draw(
        st.sampled_from(
            [
                f"INSERT INTO {table} ({column}) VALUES ({value})",
                f"UPDATE {table} SET {column} = {value}",
                f"UPDATE {table} SET {column} = {value} WHERE {column} <> {value}",
                f"DELETE FROM {table}",
                f"DELETE FROM {table} WHERE {column} = {value}",
            ]
        )
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=_selects(), dialect=st.sampled_from(["sqlite", "mysql", "postgres"]))
def test_property_simple_selects_are_read_only(sql: str, dialect: str) -> None:
    analysis = analyze_sql(sql, dialect)
    assert analysis.read_only, (sql, analysis.reason)
    assert analysis.statement_type == "SELECT"
    assert len(analysis.tables) == 1 and analysis.tables[0] in _TABLE_COLUMNS


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=_writes(), dialect=st.sampled_from(["sqlite", "mysql", "postgres"]))
def test_property_inserts_updates_deletes_are_not_read_only(sql: str, dialect: str) -> None:
    analysis = analyze_sql(sql, dialect)
    assert not analysis.read_only
    assert analysis.statement_type in ("INSERT", "UPDATE", "DELETE")


# --- the guard: refused outright, in every dialect and mode (issue 17, items 2, 3 and 10) ------------

DIALECTS = ["mysql", "sqlite", "postgres"]
REPRO = "SELECT 'a\\'; COMMIT; SET SESSION TRANSACTION READ WRITE; UPDATE t SET v=v+1; COMMIT; -- '"


def _refused(sql: str, dialect: DialectLike) -> str:
    analysis = analyze_sql(sql, dialect)
    assert analysis.refusal is not None, (sql, analysis)
    assert not analysis.read_only and analysis.reason == analysis.refusal
    return analysis.refusal


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 /*!, SLEEP(3) */",
        "SELECT 1 /*!50001 , SLEEP(3) */",
        "SELECT 1 /*M!100000 , SLEEP(3) */",
        "SELECT id FROM orders /*! INTO OUTFILE '/tmp/x' */",
        "SELECT /*!, LOAD_FILE('/etc/passwd') */ 1",
        "SELECT 1 /*!",  # unterminated: cannot be tokenized, refused on the raw text
        "/*! SELECT SLEEP(3) */",  # a comment alone: sqlglot keeps no token to attach it to
        "SELECT 1; /*! SELECT SLEEP(3) */",
        "SELECT 1/*!,SLEEP(3)*/",
        "SELECT 1 -- /*! in a line comment: harmless, refused all the same\n",
    ],
)
def test_executable_comments_are_refused(sql: str, dialect: str) -> None:
    assert "executable comments" in _refused(sql, dialect)


def test_optimizer_hints_and_ordinary_comments_stay_allowed() -> None:
    for sql in ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ id FROM orders", "SELECT 1 /* ! not executable */",
                "SELECT '/*! only text */' AS s", "SELECT 1 AS `/*!name*/`", "SELECT N'/*M!x', _utf8mb4'/*!'"):
        analysis = analyze_sql(sql, "mysql")
        assert analysis.read_only and analysis.refusal is None, sql


_MARKS = st.sampled_from(["/*!", "/*M!", "/*!50001", "/*!99999 ", "/*M!100201"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=_selects(), mark=_MARKS, body=st.sampled_from([", SLEEP(3)", " , get_lock('x', 0)", ""]),
       cut=st.integers(0, 10_000), dialect=st.sampled_from(DIALECTS), upper=st.booleans())
def test_property_an_executable_comment_anywhere_between_tokens_is_refused(
    sql: str, mark: str, body: str, cut: int, dialect: str, upper: bool
) -> None:
    spaces = [i for i, char in enumerate(sql) if char == " " and sql[:i].count("'") % 2 == 0] + [len(sql)]
    at = spaces[cut % len(spaces)]
    comment = f"{mark}{body} */"
    text = f"{sql[:at]} {comment.upper() if upper else comment} {sql[at:]}"
    assert "executable comments" in _refused(text, dialect)


@settings(max_examples=80, deadline=None)
@given(mark=_MARKS, quote=st.sampled_from(["'", '"']), before=st.text("ab _", max_size=5))
def test_property_an_executable_comment_inside_a_string_literal_is_text(mark: str, quote: str, before: str) -> None:
    analysis = analyze_sql(f"SELECT {quote}{before}{mark} x */{quote} AS s", "mysql")
    assert analysis.read_only and analysis.refusal is None


@settings(max_examples=150, deadline=None)
@given(content=st.text(alphabet="ab'\\\";-/*!M#\n COMIT", max_size=40), no_backslash=st.booleans())
def test_property_a_literal_escaped_for_the_servers_mode_hides_nothing(content: str, no_backslash: bool) -> None:
    if no_backslash:
        escaped, mode = content.replace("'", "''"), "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES"
    else:
        escaped, mode = content.replace("\\", "\\\\").replace("'", "\\'"), "STRICT_TRANS_TABLES"
    analysis = analyze_sql(f"SELECT '{escaped}' AS s", quoting_dialect("mysql", mode))
    assert analysis.read_only and analysis.refusal is None and analysis.statement_count == 1, analysis


def test_the_repro_is_one_string_in_the_default_mode_and_refused_in_no_backslash_escapes() -> None:
    assert analyze_sql(REPRO, "mysql").read_only  # why the server's real mode matters
    mode = quoting_dialect("mysql", "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES")
    assert "transaction control (COMMIT)" in _refused(REPRO, mode)


def test_quoting_follows_the_servers_sql_mode() -> None:
    assert quoting_dialect("mysql", None) == "mysql"
    assert quoting_dialect("mysql", "STRICT_TRANS_TABLES") == "mysql"
    assert quoting_dialect("mysql", "no_backslash_escapes") is MySQLNoBackslashEscapes
    assert quoting_dialect("sqlite", "NO_BACKSLASH_ESCAPES") == "sqlite"
    ansi = quoting_dialect("mysql", "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI")
    assert analyze_sql('SELECT "id" FROM orders', ansi).tables == ("orders",)
    hidden = 'SELECT "a\\"; COMMIT; -- " AS s'  # an identifier `a\` under ANSI_QUOTES, a string otherwise
    assert analyze_sql(hidden, "mysql").read_only
    assert "COMMIT" in _refused(hidden, ansi)
    assert analyze_sql("SELECT 'it''s', 'c:\\dir\\'", quoting_dialect("mysql", "NO_BACKSLASH_ESCAPES")).read_only


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "SAVEPOINT s1", "RELEASE SAVEPOINT s1",
        "ROLLBACK TO SAVEPOINT s1", "XA START 'x'", "XA COMMIT 'x'", "END", "ABORT",
        "SET SESSION TRANSACTION READ WRITE", "SET autocommit = 1", "SET @a = 1", "set names utf8",
        "SET STATEMENT max_statement_time = 1 FOR SELECT 1", "SELECT 1; COMMIT", "SELECT 1; set x = 1",
    ],
)
def test_transaction_control_and_set_are_refused(sql: str, dialect: str) -> None:
    reason = _refused(sql, dialect)
    assert "transaction control" in reason or "SET statements" in reason


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW GRANTS", "show grants for current_user()", "SHOW CREATE USER root", "SHOW PROCESSLIST",
        "SHOW FULL PROCESSLIST", "SHOW PRIVILEGES", "SHOW ENGINE INNODB STATUS", "SHOW SLAVE STATUS",
        "SHOW REPLICA STATUS", "SHOW MASTER STATUS", "SHOW BINARY LOGS", "SHOW BINLOG EVENTS",
        "SHOW RELAYLOG EVENTS", "SHOW USER_STATISTICS", "SHOW CLIENT_STATISTICS", "SHOW EXPLAIN FOR 5",
        "SHOW ANALYZE FOR 5", "EXPLAIN FOR CONNECTION 5", "SELECT * FROM mysql.user",
        "SELECT User, Password FROM `mysql`.`user`", "SELECT * FROM MySQL.User", "SELECT * FROM sys.session",
        "SELECT * FROM performance_schema.threads", "SELECT * FROM `Performance_Schema`.accounts",
        "SELECT * FROM information_schema.USER_PRIVILEGES", "SELECT * FROM INFORMATION_SCHEMA.`processlist`",
        "SELECT * FROM information_schema.schema_privileges", "SELECT * FROM information_schema.TABLE_PRIVILEGES",
        "SELECT * FROM information_schema.column_privileges", "SELECT * FROM information_schema.APPLICABLE_ROLES",
        "SELECT * FROM information_schema.enabled_roles", "SHOW TABLES FROM mysql", "SHOW COLUMNS FROM user IN mysql",
        "DESCRIBE mysql.user", "SHOW CREATE TABLE mysql.user", "SELECT id FROM orders WHERE id IN "
        "(SELECT 1 FROM mysql.db)", "WITH u AS (SELECT * FROM mysql.global_priv) SELECT * FROM u",
        "EXPLAIN SELECT * FROM mysql.user",
    ],
)
def test_account_revealing_statements_are_refused(sql: str) -> None:
    assert "not allowed" in _refused(sql, "mysql")


def test_ordinary_show_and_information_schema_stay_allowed() -> None:
    for sql in ("SHOW TABLES", "SHOW COLUMNS FROM orders", "SHOW STATUS", "SHOW VARIABLES LIKE 'version'",
                "SHOW CREATE TABLE orders", "SELECT TABLE_NAME FROM information_schema.TABLES",
                "SELECT * FROM information_schema.COLUMNS WHERE TABLE_NAME = 'mysql'", "SELECT * FROM sys"):
        analysis = analyze_sql(sql, "mysql")
        assert analysis.refusal is None and analysis.read_only, sql


_SCHEMA_NAMES = st.sampled_from(["mysql", "performance_schema", "sys"])


@settings(max_examples=100, deadline=None)
@given(schema=_SCHEMA_NAMES, table=st.sampled_from(["user", "db", "threads", "x"]), flips=st.integers(0, 2**20),
       quoted=st.booleans(), dialect=st.sampled_from(DIALECTS))
def test_property_system_schemas_are_refused_in_any_case_and_quoting(
    schema: str, table: str, flips: int, quoted: bool, dialect: str
) -> None:
    cased = "".join(c.upper() if flips >> i & 1 else c for i, c in enumerate(schema))
    quote = {"mysql": "`"}.get(dialect, '"') if quoted else ""
    sql = f"SELECT * FROM {quote}{cased}{quote}.{quote}{table}{quote}"
    assert "system schema" in _refused(sql, dialect)


def test_a_user_variable_assignment_is_not_read_only() -> None:
    analysis = analyze_sql("SELECT @n := count(*) FROM orders", "mysql")
    assert not analysis.read_only and "user variable" in (analysis.reason or "")


# --- approval policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "read_approval", "write_approval"),
    [("always", True, True), ("writes", False, True), ("never", False, False), (" Writes ", False, True)],
)
def test_policy_table(policy: str, read_approval: bool, write_approval: bool) -> None:
    read, write = analyze_sql("SELECT 1"), analyze_sql("DELETE FROM orders")
    assert needs_approval(read, policy) is read_approval
    assert needs_approval(write, policy) is write_approval


def test_writes_policy_asks_for_unparsable_sql() -> None:
    assert needs_approval(analyze_sql("SELEC nonsense"), "writes")


def test_unknown_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="HITL policy"):
        needs_approval(analyze_sql("SELECT 1"), "sometimes")


# --- demo database ----------------------------------------------------------------------------------


@pytest.fixture
def demo_path(tmp_path: Path) -> str:
    path = str(tmp_path / "demo.db")
    build_demo_database(path)
    return path


def _counts(path: str) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DEMO_ROW_COUNTS}


def _dump(path: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return [row for t in sorted(DEMO_ROW_COUNTS) for row in conn.execute(f"SELECT * FROM {t} ORDER BY 1")]


def test_demo_database_has_the_documented_tables(demo_path: str) -> None:
    assert DEMO_ROW_COUNTS == {"customers": 50, "products": 20, "orders": 300}
    assert _counts(demo_path) == DEMO_ROW_COUNTS
    with closing(sqlite3.connect(demo_path)) as conn:
        chinese = conn.execute("SELECT count(*) FROM customers WHERE country = 'China'").fetchone()[0]
        cities = {row[0] for row in conn.execute("SELECT DISTINCT city FROM customers")}
        orphans = conn.execute(
            "SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id "
            "LEFT JOIN products p ON p.id = o.product_id WHERE c.id IS NULL OR p.id IS NULL"
        ).fetchone()[0]
    assert chinese > 0 and cities & {"北京", "上海", "深圳", "杭州", "成都"}
    assert orphans == 0


def test_demo_database_is_deterministic_and_idempotent(tmp_path: Path, demo_path: str) -> None:
    other = str(tmp_path / "sub" / "again.db")
    build_demo_database(other)
    assert _dump(other) == _dump(demo_path)
    before = Path(demo_path).stat().st_mtime_ns
    build_demo_database(demo_path)  # already there: left alone
    assert Path(demo_path).stat().st_mtime_ns == before
    Path(other).unlink()
    build_demo_database(other)  # missing: rebuilt
    assert _counts(other) == DEMO_ROW_COUNTS


# --- SqlDatabase (SQLite) ---------------------------------------------------------------------------


@pytest.fixture
async def demo_db(demo_path: str):  # type: ignore[no-untyped-def]
    db = SqlDatabase(f"sqlite+aiosqlite:///{demo_path}", max_rows=10)
    yield db
    await db.close()


async def test_list_tables_and_dialect(demo_db: SqlDatabase) -> None:
    assert demo_db.dialect == "sqlite"
    assert await demo_db.list_tables() == ["customers", "orders", "products"]


async def test_run_query_returns_json_safe_rows(demo_db: SqlDatabase) -> None:
    result = await demo_db.run_query(
        "SELECT c.country, count(*) AS n, sum(o.quantity * p.price) AS spend FROM orders o "
        "JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id "
        "GROUP BY c.country ORDER BY n DESC, c.country"
    )
    assert result.columns == ["country", "n", "spend"]
    assert 0 < result.row_count == len(result.rows) <= 10
    assert not result.truncated
    assert sum(row[1] for row in result.rows) == 300
    assert "China" in {row[0] for row in result.rows}
    assert result.table() == {
        "columns": ["country", "n", "spend"], "rows": result.rows, "row_count": result.row_count,
        "truncated": False,
    }
    text = result.as_text()
    assert text.splitlines()[0] == "country | n | spend"
    assert text.endswith(f"({result.row_count} rows)")


async def test_truncation_at_max_rows(demo_db: SqlDatabase) -> None:
    result = await demo_db.run_query("SELECT id, status FROM orders ORDER BY id")
    assert (result.row_count, result.truncated) == (10, True)
    assert [row[0] for row in result.rows] == list(range(1, 11))
    assert "(truncated" in result.as_text()
    exact = await demo_db.run_query("SELECT id FROM orders ORDER BY id LIMIT 10")
    assert (exact.row_count, exact.truncated) == (10, False)


def test_as_text_is_cut_to_max_chars() -> None:
    result = QueryResult(["id", "note"], [[i, "x" * 50] for i in range(100)], 100, False)
    text = result.as_text(max_chars=500)
    assert len(text) <= 500
    assert text.startswith("id | note\n0 | ")
    assert "(truncated" in text.splitlines()[-1]
    assert QueryResult(["a"], [[None], ["p|q\nr"]], 2, False).as_text() == "a\nNULL\np\\|q\\nr\n(2 rows)"


def test_json_safe_values() -> None:
    from datetime import date, datetime
    from decimal import Decimal

    assert json_safe(Decimal("12.50")) == 12.5
    assert json_safe(date(2024, 1, 2)) == "2024-01-02"
    assert json_safe(datetime(2024, 1, 2, 3, 4)) == "2024-01-02T03:04:00"
    assert json_safe(b"abc") == "abc"
    assert json_safe(b"\xff\x00") == "base64:/wA="
    assert json_safe(float("nan")) == "nan"


async def test_describe_table(demo_db: SqlDatabase) -> None:
    described = await demo_db.describe_table("Orders")
    assert described["table"] == "orders"
    assert [c["name"] for c in described["columns"]] == [
        "id", "customer_id", "product_id", "quantity", "order_date", "status",
    ]
    assert {"name": "status", "type": "TEXT", "nullable": False} in described["columns"]
    assert len(described["sample_rows"]) == 3
    assert all(isinstance(row, list) and len(row) == 6 for row in described["sample_rows"])


async def test_describe_unknown_table(demo_db: SqlDatabase) -> None:
    with pytest.raises(SqlUnknownTableError, match="Unknown table 'nope'.*customers, orders, products"):
        await demo_db.describe_table("nope")


async def test_a_write_is_refused_and_the_data_is_unchanged(demo_db: SqlDatabase, demo_path: str) -> None:
    before = _dump(demo_path)
    for sql in ("DELETE FROM orders", "SELECT 1; DELETE FROM orders", "UPDATE products SET price = 0"):
        with pytest.raises(SqlRefusedError, match="only read-only"):
            await demo_db.run_query(sql)
    assert _dump(demo_path) == before


async def test_the_database_itself_refuses_writes(demo_db: SqlDatabase, demo_path: str) -> None:
    """Bypass the parser: the connection (mode=ro URI + PRAGMA query_only) must still refuse."""
    before = _dump(demo_path)
    assert "mode=ro" in demo_db.url
    for sql in ("DELETE FROM orders", "UPDATE products SET price = 0", "CREATE TABLE x (a INT)"):
        with pytest.raises(SqlExecutionError, match="readonly"):
            await demo_db._execute(sql)
    assert (await demo_db._execute("PRAGMA query_only")).rows == [[1]]
    assert _dump(demo_path) == before


async def test_each_read_only_guard_holds_alone(
    demo_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _dump(demo_path)
    # The mode=ro URI alone (no PRAGMA: the connection is not prepared read-only).
    uri_only = SqlDatabase(sqlite_url(demo_path, read_only=True), read_only=False)
    # PRAGMA query_only alone (the URL is left read-write).
    monkeypatch.setattr(database_module, "_sqlite_read_only", lambda url: url)
    pragma_only = SqlDatabase(sqlite_url(demo_path, read_only=False))
    try:
        assert "mode=ro" not in pragma_only.url
        for db in (uri_only, pragma_only):
            with pytest.raises(SqlExecutionError, match="readonly"):
                await db._execute("DELETE FROM orders")
    finally:
        await uri_only.close()
        await pragma_only.close()
    assert _dump(demo_path) == before


async def test_driver_errors_are_wrapped(demo_db: SqlDatabase) -> None:
    with pytest.raises(SqlExecutionError, match="no such table: nope") as caught:
        await demo_db.run_query("SELECT * FROM nope")
    assert caught.value.__cause__ is not None
    assert "Traceback" not in str(caught.value) and "sqlalche.me" not in str(caught.value)


async def test_cancel_interrupts_a_slow_sqlite_query(demo_db: SqlDatabase) -> None:
    started = time.monotonic()
    task = asyncio.create_task(demo_db.run_query(SLOW_QUERY))
    await asyncio.sleep(0.1)  # kept: SQLite shows no running query to poll; the cancel must come mid-query
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 2
    # The statement really stopped: its connection is usable again and closes at once
    # (aiosqlite serialises calls per connection, so a still-running query would block both).
    assert (await demo_db.run_query("SELECT count(*) FROM products")).rows == [[20]]
    await asyncio.wait_for(demo_db.close(), timeout=1)
    assert time.monotonic() - started < 2


async def test_timeout_stops_a_slow_sqlite_query(demo_path: str) -> None:
    db = SqlDatabase(f"sqlite+aiosqlite:///{demo_path}", timeout_s=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(SqlTimeoutError, match="0.2 s"):
            await db.run_query(SLOW_QUERY)
        assert time.monotonic() - started < 2
        assert (await db.run_query("SELECT count(*) FROM customers")).rows == [[50]]
    finally:
        await asyncio.wait_for(db.close(), timeout=1)


def test_read_only_is_refused_for_unsupported_backends() -> None:
    with pytest.raises(ValueError, match="read-only"):
        SqlDatabase("oracle+oracledb://u:p@localhost/x")


def test_analysis_dataclass_is_frozen() -> None:
    analysis = analyze_sql("SELECT 1")
    assert isinstance(analysis, SqlAnalysis)
    with pytest.raises(AttributeError):
        analysis.read_only = False  # type: ignore[misc]
