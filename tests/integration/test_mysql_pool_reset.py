"""The pool's reset of a returned connection (adapters/mysql/engine.py, _rollback_if_open), on the real MariaDB:
a ROLLBACK only when a transaction is still open, so a committed transaction costs no extra round trip and an
open one never reaches the next user of the connection."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dataagent.adapters.mysql.engine import EngineOptions, build_engine, driver_cursor, transaction
from tests.mysqldb import admin_query, database_url, fresh_database

pytestmark = pytest.mark.integration

ONE = EngineOptions(pool_size=1, max_overflow=0)  # every checkout gets the same connection


async def rollbacks_and_id(conn: object) -> tuple[int, int]:
    row = (await conn.execute(  # type: ignore[attr-defined]
        text("SELECT VARIABLE_VALUE, CONNECTION_ID() FROM information_schema.SESSION_STATUS "
             "WHERE VARIABLE_NAME = 'COM_ROLLBACK'"))).one()
    return int(row[0]), int(row[1])


async def test_a_connection_returned_after_a_commit_is_not_rolled_back() -> None:
    async with fresh_database() as db:
        engine = build_engine(database_url(db), ONE)
        try:
            async with engine.begin() as conn:
                before, first = await rollbacks_and_id(conn)
            async with engine.begin() as conn:
                after, second = await rollbacks_and_id(conn)
        finally:
            await engine.dispose()
    assert first == second  # the same connection, back from the pool
    assert after == before  # no ROLLBACK between the two transactions (SQLAlchemy's own reset sends one)


async def test_a_transaction_left_open_under_sqlalchemy_is_rolled_back_before_the_connection_is_reused() -> None:
    async with fresh_database() as db:
        await admin_query(f"CREATE TABLE `{db}`.t (x INT) ENGINE=InnoDB")
        engine = build_engine(database_url(db), ONE)
        try:
            async with engine.connect() as conn:
                await conn.commit()  # SQLAlchemy sees no transaction from here on...
                cursor = await driver_cursor(conn)
                await cursor.execute("INSERT INTO t VALUES (1)")  # ...but the driver opened one (autocommit off)
            async def count(conn: object, attempt: int) -> int:
                return int((await conn.execute(text("SELECT COUNT(*) FROM t"))).scalar_one())  # type: ignore[attr-defined]

            seen_by_next_user = await transaction(engine, count, "test")
        finally:
            await engine.dispose()
        assert seen_by_next_user == 0  # rolled back on return, not carried into the next transaction
        assert (await admin_query(f"SELECT COUNT(*) FROM `{db}`.t"))[0][0] == 0  # and never committed
