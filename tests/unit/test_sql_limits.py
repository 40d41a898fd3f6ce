"""Result bounds and session state on SQLite: bytes per result and per cell, SQLite's length limit, and
connections that carry nothing from one query to the next (issue 17, items 2 and 5)."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataagent.adapters.agents.sql import QueryResult, SqlDatabase, SqlExecutionError, SqlRefusedError, sqlite_url
from dataagent.adapters.agents.sql.fetch import CUT_MARK, ResultLimits

WIDE_ROWS = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) "
    "SELECT i, hex(randomblob(50000)) AS blob_hex FROM n"  # 40 rows of 100 000 characters
)


@pytest.fixture
def data_path(tmp_path: Path) -> str:
    path = str(tmp_path / "data.sqlite3")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        conn.execute("INSERT INTO t VALUES (1, 10)")
        conn.commit()
    return path


def table_bytes(result: QueryResult) -> int:
    return len(json.dumps(result.table(), ensure_ascii=False).encode())


async def test_a_result_over_the_byte_bound_is_cut_and_says_so(data_path: str) -> None:
    db = SqlDatabase(sqlite_url(data_path), max_rows=200, max_result_bytes=200_000, max_cell_bytes=30_000)
    try:
        result = await db.run_query(WIDE_ROWS)
    finally:
        await db.close()
    assert result.truncated and result.cut_by_size and result.table()["truncated"] is True
    assert 0 < result.row_count < 40
    assert all(len(row[1].encode()) <= 30_000 + len(CUT_MARK.encode()) and row[1].endswith(CUT_MARK)
               for row in result.rows)
    assert table_bytes(result) <= 200_000
    assert "cut by size" in result.as_text()


async def test_a_long_cell_is_cut_and_the_rows_kept_when_they_fit(data_path: str) -> None:
    db = SqlDatabase(sqlite_url(data_path), max_rows=5, max_result_bytes=1_000_000, max_cell_bytes=1000)
    try:
        result = await db.run_query(WIDE_ROWS)
    finally:
        await db.close()
    assert result.row_count == 5 and result.truncated and result.cut_by_size
    assert [row[0] for row in result.rows] == [1, 2, 3, 4, 5]
    assert all(row[1].endswith(CUT_MARK) and len(row[1]) == 1000 + len(CUT_MARK) for row in result.rows)


async def test_a_small_result_is_untouched(data_path: str) -> None:
    db = SqlDatabase(sqlite_url(data_path), max_result_bytes=1024, max_cell_bytes=16)
    try:
        result = await db.run_query("SELECT id, v, 'short' AS s FROM t")
    finally:
        await db.close()
    assert (result.rows, result.truncated, result.cut_by_size) == ([[1, 10, "short"]], False, False)


async def test_sqlite_refuses_a_huge_value_at_once_with_a_clear_error(data_path: str) -> None:
    db = SqlDatabase(sqlite_url(data_path))  # the default bound: 1 MiB
    try:
        started = time.monotonic()
        with pytest.raises(SqlExecutionError, match="too big.*1048576 bytes.*DATAAGENT_SQL_MAX_RESULT_BYTES"):
            await db.run_query("SELECT randomblob(1000000000)")
        assert time.monotonic() - started < 1
    finally:
        await db.close()


async def test_nothing_a_query_leaves_in_its_session_reaches_the_next_one(data_path: str) -> None:
    db = SqlDatabase(sqlite_url(data_path, read_only=False), read_only=False)
    try:
        await db.run_query("CREATE TEMP TABLE scratch (a INTEGER)")
        with pytest.raises(SqlExecutionError, match="no such table"):
            await db.run_query("SELECT * FROM temp.scratch")
    finally:
        await db.close()


@pytest.mark.parametrize("sql", ["BEGIN", "SELECT 1 /*!, 2 */", "SAVEPOINT a", "SELECT * FROM mysql.user"])
async def test_the_guard_holds_on_a_database_that_may_write(data_path: str, sql: str) -> None:
    db = SqlDatabase(sqlite_url(data_path, read_only=False), read_only=False)
    try:
        with pytest.raises(SqlRefusedError, match="^Refused: .*not allowed"):
            await db.run_query(sql)
    finally:
        await db.close()


_CELLS = st.one_of(
    st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text(max_size=3000),
    st.binary(max_size=3000),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(_CELLS, min_size=3, max_size=3), max_size=40),
       max_bytes=st.integers(1024, 20_000), max_cell=st.integers(16, 4000))
def test_property_a_result_never_exceeds_its_bound(
    tmp_path: Path, rows: list[list[object]], max_bytes: int, max_cell: int
) -> None:
    import asyncio

    path = str(tmp_path / f"p{time.monotonic_ns()}.sqlite3")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE p (a, b, c)")
        conn.executemany("INSERT INTO p VALUES (?, ?, ?)", rows)
        conn.commit()

    async def read() -> QueryResult:
        db = SqlDatabase(sqlite_url(path), max_rows=100, max_result_bytes=max_bytes, max_cell_bytes=max_cell)
        try:
            return await db.run_query("SELECT a, b, c FROM p ORDER BY rowid")
        finally:
            await db.close()

    result = asyncio.run(read())
    assert table_bytes(result) <= max_bytes + 64  # the bound counts cells and separators, not JSON's keys
    bound = ResultLimits(100, max_bytes, max_cell).cell_bound(3, 0)
    for cell in (c for row in result.rows for c in row if isinstance(c, str)):
        assert len(cell.encode()) <= bound + len(CUT_MARK.encode())
    assert result.truncated == (result.cut_by_size or result.row_count < len(rows))
