"""The data engine's connections: no pooling of session state, one statement per call, bounded values.

- MySQL/MariaDB and PostgreSQL use NullPool: every query gets a fresh connection, closed afterwards, so locks
  (GET_LOCK, advisory locks), user and session variables, temporary tables and prepared statements never
  reach the next query (about +1 to 1.5 ms per query on a local MariaDB). A SQLite file is opened per query too.
- asyncmy always asks the server for CLIENT_MULTI_STATEMENTS; the data engine connects without it, so the
  server itself refuses `SELECT 1; UPDATE ...`. (SQLite's driver runs one statement per call; SQLAlchemy's
  asyncpg dialect prepares each statement, and a prepared statement is a single one.)
- SQLite's length limit (SQLITE_LIMIT_LENGTH) is set to the result bound: `randomblob(1e9)` fails at once.
- Each checkout is prepared: a read-only transaction if asked, the way to stop its query, and (MySQL) the
  session's sql_mode, which decides how quotes are read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

Stopper = Callable[[], Awaitable[None]]
Killer = Callable[[str], Awaitable[None]]
MYSQL_BACKENDS = frozenset({"mysql", "mariadb"})


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked-out connection made ready: how to stop its query, and the server's sql_mode (MySQL)."""

    stop: Stopper
    sql_mode: str | None = None


def create_data_engine(url: URL, max_value_bytes: int) -> AsyncEngine:
    """The engine of a data source (see the module's docstring)."""
    backend, driver = url.get_backend_name(), url.get_driver_name()
    options: dict[str, Any] = {}
    if backend != "sqlite" or not _in_memory(url):
        options["poolclass"] = NullPool
    if driver == "asyncmy":
        options["connect_args"] = {"async_creator_fn": _asyncmy_single_statements}
    engine = create_async_engine(url, **options)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_length_limit(max_value_bytes))
    return engine


async def prepare(conn: AsyncConnection, read_only: bool, kill: Killer) -> Prepared:
    """Make the connection read-only (if asked); return how to stop a query running on it."""
    backend = conn.dialect.name
    if backend == "sqlite":
        if read_only:
            await conn.exec_driver_sql("PRAGMA query_only = ON")
        raw = await conn.get_raw_connection()
        return Prepared(_sqlite_interrupter(raw.driver_connection))
    if backend in MYSQL_BACKENDS:
        if read_only:
            await conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
            await conn.exec_driver_sql("START TRANSACTION READ ONLY")
        found: Any = (await conn.exec_driver_sql("SELECT CONNECTION_ID(), @@SESSION.sql_mode")).one()
        connection_id, sql_mode = int(found[0]), str(found[1] or "")
        return Prepared(lambda: kill(f"KILL QUERY {connection_id}"), sql_mode)
    if backend == "postgresql":
        if read_only:
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        pid = int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())
        return Prepared(lambda: kill(f"SELECT pg_cancel_backend({pid})"))
    return Prepared(_no_stopper)


async def _asyncmy_single_statements(**kwargs: Any) -> Any:
    """An asyncmy connection without CLIENT_MULTI_STATEMENTS (asyncmy sets it on every connection)."""
    from asyncmy.connection import Connection
    from asyncmy.constants.CLIENT import MULTI_STATEMENTS

    connection: Any = Connection(**kwargs)  # type: ignore[no-untyped-call]
    connection._client_flag &= ~MULTI_STATEMENTS  # read at the handshake, in connect()
    await connection.connect()
    return connection


def _sqlite_length_limit(max_bytes: int) -> Callable[[Any, Any], None]:
    def set_limit(dbapi_connection: Any, _record: Any) -> None:
        sqlite_connection = dbapi_connection.driver_connection._conn  # aiosqlite -> sqlite3.Connection
        sqlite_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(max_bytes, 1024))

    return set_limit


def _sqlite_interrupter(driver_connection: Any) -> Stopper:
    """sqlite3's interrupt(), called from the event loop: thread-safe, and it aborts the running statement."""
    sqlite_connection = driver_connection._conn  # aiosqlite.Connection -> sqlite3.Connection

    async def interrupt() -> None:
        sqlite_connection.interrupt()

    return interrupt


async def _no_stopper() -> None:
    return None


def _in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"
