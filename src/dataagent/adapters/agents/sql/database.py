"""An async SQL data source over SQLAlchemy: bounded, read-only at the database, stoppable queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlglot import exp

from dataagent.adapters.agents.sql.analysis import analyze_sql
from dataagent.adapters.agents.sql.errors import (
    SqlExecutionError,
    SqlRefusedError,
    SqlTimeoutError,
    SqlUnknownTableError,
)
from dataagent.adapters.agents.sql.results import QueryResult, json_safe

log = logging.getLogger(__name__)

T = TypeVar("T")
Stopper = Callable[[], Awaitable[None]]

SAMPLE_ROWS = 3
STOP_TIMEOUT_S = 5.0  # how long a KILL QUERY / interrupt, then the stopped query's return, may take
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "mariadb": "mysql", "mssql": "tsql"}
_READ_ONLY_BACKENDS = frozenset({"sqlite", "mysql", "mariadb", "postgresql"})


def sqlite_url(path: str, read_only: bool = True) -> str:
    """The aiosqlite URL of a SQLite file; read-only opens it with the `mode=ro` URI."""
    if read_only:
        return f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"
    return f"sqlite+aiosqlite:///{path}"


class SqlDatabase:
    """A database the agent may query. With `read_only`, writes are refused by the parser AND the database.

    Each query runs on its own pooled connection, bounded by `timeout_s`; on timeout or cancellation the
    query is stopped in the database (SQLite interrupt, MySQL KILL QUERY, PostgreSQL pg_cancel_backend).
    """

    def __init__(
        self, url: str, max_rows: int = 200, timeout_s: float = 30.0, read_only: bool = True
    ) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if read_only and backend not in _READ_ONLY_BACKENDS:
            raise ValueError(f"read-only access is not supported for {backend!r} databases")
        if read_only and backend == "sqlite":
            parsed = _sqlite_read_only(parsed)
        self.url = parsed.render_as_string(hide_password=True)
        self.max_rows = max_rows
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._url = parsed
        self._engine: AsyncEngine = create_async_engine(parsed)
        self._killer: AsyncEngine | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def dialect(self) -> str:
        """sqlglot's name of the database's dialect: "sqlite", "mysql", "postgres", ..."""
        name = self._engine.dialect.name
        return _SQLGLOT_DIALECTS.get(name, name)

    async def list_tables(self) -> list[str]:
        """The tables and views of the database (the connection's default schema), sorted."""

        def names(sync_conn: Connection) -> list[str]:
            inspector = inspect(sync_conn)
            found = inspector.get_table_names() + inspector.get_view_names()
            return sorted(n for n in set(found) if not n.startswith("sqlite_"))

        return await self._run(lambda conn: conn.run_sync(names))

    async def describe_table(self, name: str) -> dict[str, Any]:
        """The table's columns (name, type, nullable) and up to 3 sample rows; SqlUnknownTableError if absent.

        The name is matched exactly, else case-insensitively.
        """
        table = _match_table(name, await self.list_tables())
        target = exp.Table(this=exp.to_identifier(table, quoted=True))
        sample_sql = exp.select("*").from_(target).limit(SAMPLE_ROWS).sql(dialect=self.dialect)

        async def work(conn: AsyncConnection) -> dict[str, Any]:
            columns = await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_columns(table))
            sample = await conn.run_sync(_fetch, sample_sql, SAMPLE_ROWS)
            described = [
                {"name": c["name"], "type": _type_name(c["type"]), "nullable": bool(c.get("nullable", True))}
                for c in columns
            ]
            return {"table": table, "columns": described, "sample_rows": sample.rows}

        return await self._run(work)

    async def run_query(self, sql: str) -> QueryResult:
        """Run one statement; on a read-only database, SqlRefusedError for anything not read-only."""
        if self.read_only:
            analysis = analyze_sql(sql, self.dialect)
            if not analysis.read_only:
                raise SqlRefusedError(f"Refused: only read-only queries are allowed ({analysis.reason}).")
        return await self._execute(sql)

    async def _execute(self, sql: str) -> QueryResult:
        """Run `sql` without the parser's check; the database-level read-only guard still applies."""
        return await self._run(lambda conn: conn.run_sync(_fetch, sql, self.max_rows))

    async def close(self) -> None:
        """Dispose the connection pools."""
        await self._engine.dispose()
        if self._killer is not None:
            await self._killer.dispose()

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` on a prepared connection within the timeout; wrap driver errors."""
        try:
            async with asyncio.timeout(self.timeout_s), self._engine.connect() as conn:
                stop = await self._prepare(conn)
                result = await self._watch(work, conn, stop)
                if not self.read_only:
                    await conn.commit()
                return result
        except TimeoutError as exc:
            message = f"The query was stopped after the {self.timeout_s:g} s time limit."
            raise SqlTimeoutError(message) from exc
        except DBAPIError as exc:
            raise SqlExecutionError(_driver_message(exc)) from exc
        except SQLAlchemyError as exc:
            raise SqlExecutionError(str(exc).split("\n")[0]) from exc

    async def _prepare(self, conn: AsyncConnection) -> Stopper:
        """Make the connection read-only (if asked) and return how to stop a query running on it."""
        backend = self._engine.dialect.name
        if backend == "sqlite":
            if self.read_only:
                await conn.exec_driver_sql("PRAGMA query_only = ON")
            raw = await conn.get_raw_connection()
            return _sqlite_interrupter(raw.driver_connection)
        if backend in ("mysql", "mariadb"):
            if self.read_only:
                await conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
                await conn.exec_driver_sql("START TRANSACTION READ ONLY")
            connection_id = int((await conn.exec_driver_sql("SELECT CONNECTION_ID()")).scalar_one())
            return lambda: self._kill(f"KILL QUERY {connection_id}")
        if backend == "postgresql":
            if self.read_only:
                await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            pid = int((await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one())
            return lambda: self._kill(f"SELECT pg_cancel_backend({pid})")
        return _no_stopper

    async def _watch(
        self, work: Callable[[AsyncConnection], Awaitable[T]], conn: AsyncConnection, stop: Stopper
    ) -> T:
        """Await `work` in a task; if cancelled (or timed out), stop the query in the database first."""
        task = asyncio.ensure_future(work(conn))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stopping = asyncio.ensure_future(_stop_and_drain(task, stop))
            self._keep(stopping)
            await asyncio.shield(stopping)  # a second cancellation leaves the stop running
            raise

    async def _kill(self, statement: str) -> None:
        """Run a KILL/cancel statement on a fresh connection (the pool may be exhausted)."""
        if self._killer is None:
            self._killer = create_async_engine(self._url, poolclass=NullPool)
        async with self._killer.connect() as conn:
            await conn.exec_driver_sql(statement)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _stop_and_drain(task: asyncio.Task[Any], stop: Stopper) -> None:
    """Stop the query in the database, then let its task return (with whatever error it gets)."""
    if not task.done():
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await stop()
        except Exception:
            log.warning("could not stop a running query", exc_info=True)
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
    if not done:
        log.warning("a stopped query did not return within %s s; abandoning it", STOP_TIMEOUT_S)
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: the stopped query's error is expected


def _sqlite_interrupter(driver_connection: Any) -> Stopper:
    """sqlite3's interrupt(), called from the event loop: thread-safe, and it aborts the running statement."""
    sqlite_connection = driver_connection._conn  # aiosqlite.Connection -> sqlite3.Connection

    async def interrupt() -> None:
        sqlite_connection.interrupt()

    return interrupt


async def _no_stopper() -> None:
    return None


def _fetch(sync_conn: Connection, sql: str, limit: int) -> QueryResult:
    """Execute `sql` as given (no bind parameters) and fetch at most `limit` rows (+1 to see truncation)."""
    statement = sql.replace("%", "%%") if sync_conn.dialect.paramstyle in ("format", "pyformat") else sql
    result = sync_conn.exec_driver_sql(statement, execution_options={"stream_results": True})
    try:
        if not result.returns_rows:
            return QueryResult([], [], 0, False)
        columns = [str(key) for key in result.keys()]
        fetched = result.fetchmany(limit + 1)
    finally:
        result.close()
    rows = [[json_safe(value) for value in row] for row in fetched[:limit]]
    return QueryResult(columns, rows, len(rows), len(fetched) > limit)


def _sqlite_read_only(url: URL) -> URL:
    """The same SQLite file opened with the read-only URI (`file:...?mode=ro&uri=true`)."""
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        return url
    if not database.startswith("file:"):
        database = f"file:{database}"
    return url.set(database=database, query={**url.query, "mode": "ro", "uri": "true"})


def _match_table(name: str, tables: list[str]) -> str:
    if name in tables:
        return name
    folded = [t for t in tables if t.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    known = ", ".join(tables) if tables else "none"
    raise SqlUnknownTableError(f"Unknown table {name!r}. Known tables: {known}.")


def _type_name(column_type: Any) -> str:
    try:
        return str(column_type)
    except Exception:
        return type(column_type).__name__


def _driver_message(exc: DBAPIError) -> str:
    """The database's own error text, without SQLAlchemy's statement echo and links."""
    original = exc.orig if exc.orig is not None else exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return f"{args[1]} (error {args[0]})"
    return str(original).split("\n")[0] or type(original).__name__
