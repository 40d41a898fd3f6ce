"""SqlDatabase against the real MariaDB: reads, a read-only transaction, and KILL QUERY on cancel/timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from dataagent.adapters.agents.sql import (
    SqlDatabase,
    SqlExecutionError,
    SqlRefusedError,
    SqlTimeoutError,
)
from tests.services import require_service
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

HOST, PORT = "127.0.0.1", 3306
SERVER_URL = f"mysql+asyncmy://root@{HOST}:{PORT}/"


@pytest.fixture(autouse=True)
def _mariadb_reachable() -> None:
    require_service(HOST, PORT, "MariaDB")


@pytest.fixture
async def admin() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    yield engine
    await engine.dispose()


@pytest.fixture
async def database(admin: AsyncEngine) -> AsyncIterator[str]:
    """A fresh database with a small `sales` table, dropped afterwards."""
    name = f"dataagent_sqltools_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        await conn.exec_driver_sql(
            f"CREATE TABLE `{name}`.sales (id INT PRIMARY KEY, city VARCHAR(40), amount DECIMAL(10, 2), "
            "sold_on DATE)"
        )
        await conn.exec_driver_sql(
            f"INSERT INTO `{name}`.sales VALUES (1, '北京', 12.50, '2024-01-02'), (2, 'Paris', 7.25, NULL), "
            "(3, '50%% off', 1.00, '2024-03-04')"
        )
    try:
        yield name
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def db(database: str) -> AsyncIterator[SqlDatabase]:
    sql_db = SqlDatabase(f"mysql+asyncmy://root@{HOST}:{PORT}/{database}", max_rows=2)
    yield sql_db
    await sql_db.close()


async def _count(admin: AsyncEngine, database: str) -> int:
    async with admin.connect() as conn:
        return int((await conn.exec_driver_sql(f"SELECT count(*) FROM `{database}`.sales")).scalar_one())


async def _running(admin: AsyncEngine, marker: str) -> list[str]:
    async with admin.connect() as conn:
        rows = (await conn.exec_driver_sql("SHOW FULL PROCESSLIST")).mappings().all()
    return [str(row["Info"]) for row in rows if row["Info"] and marker in str(row["Info"])]


async def _wait_until_gone(admin: AsyncEngine, marker: str, within_s: float) -> float:
    started = time.monotonic()

    async def gone() -> bool:
        return not await _running(admin, marker)

    await eventually(gone, within_s, interval=0.05, what=f"the end of query {marker}")
    return time.monotonic() - started


async def test_read_query(db: SqlDatabase) -> None:
    assert db.dialect == "mysql"
    assert await db.list_tables() == ["sales"]
    result = await db.run_query("SELECT id, city, amount, sold_on FROM sales ORDER BY id")
    assert result.columns == ["id", "city", "amount", "sold_on"]
    assert result.rows == [[1, "北京", 12.5, "2024-01-02"], [2, "Paris", 7.25, None]]
    assert result.truncated
    like = await db.run_query("SELECT city FROM sales WHERE city LIKE '%off'")
    assert like.rows == [["50% off"]]
    described = await db.describe_table("sales")
    assert [c["name"] for c in described["columns"]] == ["id", "city", "amount", "sold_on"]
    assert len(described["sample_rows"]) == 3


async def test_write_is_refused_by_the_parser_and_by_the_database(
    db: SqlDatabase, admin: AsyncEngine, database: str
) -> None:
    with pytest.raises(SqlRefusedError):
        await db.run_query("DELETE FROM sales")
    writes = ("DELETE FROM sales", "INSERT INTO sales VALUES (9, 'x', 1, NULL)", "UPDATE sales SET id = 0")
    for sql in writes:
        with pytest.raises(SqlExecutionError, match="READ ONLY"):
            await db._execute(sql)  # bypasses the parser: the READ ONLY transaction must refuse
    assert await _count(admin, database) == 3


async def test_cancel_kills_the_query_on_the_server(db: SqlDatabase, admin: AsyncEngine) -> None:
    marker = f"m_{uuid.uuid4().hex[:10]}"
    task = asyncio.create_task(db._execute(f"SELECT SLEEP(30) AS {marker}"))  # SLEEP is refused by run_query
    await eventually(lambda: _running(admin, marker), 5, interval=0.05, what="the query running before the cancel")
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 2
    await _wait_until_gone(admin, marker, within_s=2)
    assert (await db.run_query("SELECT count(*) AS n FROM sales")).rows == [[3]]


async def test_timeout_kills_the_query_on_the_server(database: str, admin: AsyncEngine) -> None:
    db = SqlDatabase(f"mysql+asyncmy://root@{HOST}:{PORT}/{database}", timeout_s=0.3)
    marker = f"m_{uuid.uuid4().hex[:10]}"
    try:
        started = time.monotonic()
        with pytest.raises(SqlTimeoutError):
            await db._execute(f"SELECT SLEEP(30) AS {marker}")
        assert time.monotonic() - started < 2
        await _wait_until_gone(admin, marker, within_s=2)
    finally:
        await db.close()
