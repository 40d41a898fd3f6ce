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

from dataagent.adapters.agents.sql.analysis import SqlAnalysis, analyze_sql
from dataagent.adapters.agents.sql.connections import (
    MYSQL_BACKENDS,
    Prepared,
    Stopper,
    create_data_engine,
    prepare,
)
from dataagent.adapters.agents.sql.dialects import DialectLike, quoting_dialect
from dataagent.adapters.agents.sql.errors import (
    SqlExecutionError,
    SqlRefusedError,
    SqlTimeoutError,
    SqlUnknownTableError,
)
from dataagent.adapters.agents.sql.estimate import Estimate, estimate_cost
from dataagent.adapters.agents.sql.fetch import ResultLimits, close_result, drop_connection, fetch_bounded
from dataagent.adapters.agents.sql.results import QueryResult

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncConnection, Prepared], Awaitable[T]]

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

    Each query runs on its own fresh connection (connections.py), bounded by `timeout_s`; on timeout or
    cancellation the query is stopped in the database (SQLite interrupt, MySQL KILL QUERY, PostgreSQL
    pg_cancel_backend). Results are read within `limits` (fetch.py). Statements the guard refuses (guard.py)
    are refused whatever `read_only` says, checked again on the connection that would run them, in its
    sql_mode.
    """

    def __init__(
        self, url: str, max_rows: int = 200, timeout_s: float = 30.0, read_only: bool = True,
        max_result_bytes: int = 1024 * 1024, max_cell_bytes: int = 64 * 1024,
    ) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if read_only and backend not in _READ_ONLY_BACKENDS:
            raise ValueError(f"read-only access is not supported for {backend!r} databases")
        if read_only and backend == "sqlite":
            parsed = _sqlite_read_only(parsed)
        self.url = parsed.render_as_string(hide_password=True)
        self.limits = ResultLimits(max_rows, max_result_bytes, max_cell_bytes)
        self.timeout_s = timeout_s
        self.read_only = read_only
        self._url = parsed
        self._engine: AsyncEngine = create_data_engine(parsed, max_result_bytes)
        self._sql_mode: str | None = None
        self._killer: AsyncEngine | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def dialect(self) -> str:
        """sqlglot's name of the database's dialect: "sqlite", "mysql", "postgres", ..."""
        name = self._engine.dialect.name
        return _SQLGLOT_DIALECTS.get(name, name)

    @property
    def max_rows(self) -> int:
        return self.limits.max_rows

    async def analyse(self, sql: str) -> SqlAnalysis:
        """`analyze_sql` in the quoting mode of the server (MySQL: its sql_mode, read once if not yet known)."""
        if self._sql_mode is None and self._engine.dialect.name in MYSQL_BACKENDS:
            try:
                await self._run(_nothing)
            except Exception:  # unreachable now: the check on the running connection still holds
                log.warning("could not read the data connection's sql_mode", exc_info=True)
        return analyze_sql(sql, self._quoting())

    @property
    def quoting(self) -> DialectLike:
        """The dialect to parse this database's SQL in (MySQL: in its last known sql_mode)."""
        return self._quoting()

    def _quoting(self, sql_mode: str | None = None) -> DialectLike:
        return quoting_dialect(self.dialect, sql_mode if sql_mode is not None else self._sql_mode)

    async def list_tables(self) -> list[str]:
        """The tables and views of the database (the connection's default schema), sorted."""

        def names(sync_conn: Connection) -> list[str]:
            inspector = inspect(sync_conn)
            found = inspector.get_table_names() + inspector.get_view_names()
            return sorted(n for n in set(found) if not n.startswith("sqlite_"))

        return await self._run(lambda conn, _: conn.run_sync(names))

    async def describe_table(self, name: str) -> dict[str, Any]:
        """The table's columns (name, type, nullable) and up to 3 sample rows; SqlUnknownTableError if absent.

        The name is matched exactly, else case-insensitively.
        """
        table = _match_table(name, await self.list_tables())
        target = exp.Table(this=exp.to_identifier(table, quoted=True))
        sample_sql = exp.select("*").from_(target).limit(SAMPLE_ROWS).sql(dialect=self.dialect)

        limits = ResultLimits(SAMPLE_ROWS, self.limits.max_bytes, self.limits.max_cell_bytes)

        async def work(conn: AsyncConnection, _: Prepared) -> dict[str, Any]:
            columns = await conn.run_sync(lambda sync_conn: inspect(sync_conn).get_columns(table))
            sample = await conn.run_sync(fetch_bounded, sample_sql, limits, self._abandon(True))
            described = [
                {"name": c["name"], "type": _type_name(c["type"]), "nullable": bool(c.get("nullable", True))}
                for c in columns
            ]
            return {"table": table, "columns": described, "sample_rows": sample.rows}

        return await self._run(work)

    async def run_query(self, sql: str, approved: SqlAnalysis | None = None) -> QueryResult:
        """Run one statement; SqlRefusedError for what the guard refuses, and on a read-only database for
        anything not read-only. The check is made again on the connection that runs it, in its sql_mode;
        `approved` (the analysis a person or the policy let through) must still hold there."""
        self._refuse(analyze_sql(sql, self._quoting()), approved)

        async def work(conn: AsyncConnection, prepared: Prepared) -> QueryResult:
            analysis = analyze_sql(sql, self._quoting(prepared.sql_mode))
            self._refuse(analysis, approved)
            return await conn.run_sync(fetch_bounded, sql, self.limits, self._abandon(analysis.read_only))

        return await self._run(work)

    async def estimate(self, analysis: SqlAnalysis, timeout_s: float = 2.0) -> Estimate:
        """The planner's estimate (EXPLAIN, estimate.py) of the statement as it will run (a data policy's
        rewrite), on a read-only connection; unavailable, never raising, when EXPLAIN fails or takes over
        `timeout_s`."""
        sql = analysis.executed_sql or analysis.sql
        return await estimate_cost(
            lambda work: self._run(work, timeout_s), self.dialect, sql, analysis.statement_type)

    async def inspect(self, reader: Callable[[Connection], T]) -> T:
        """Run `reader` (SQLAlchemy inspection on a sync connection) within the timeout."""
        return await self._run(lambda conn, _: conn.run_sync(reader))

    async def _execute(self, sql: str) -> QueryResult:
        """Run `sql` without the parser's check; the database-level read-only guard still applies."""
        return await self._run(
            lambda conn, _: conn.run_sync(fetch_bounded, sql, self.limits, self._abandon(True)))

    def _refuse(self, analysis: SqlAnalysis, approved: SqlAnalysis | None) -> None:
        if analysis.refusal is not None:
            raise SqlRefusedError(f"Refused: {analysis.refusal}.")
        if self.read_only and not analysis.read_only:
            raise SqlRefusedError(f"Refused: only read-only queries are allowed ({analysis.reason}).")
        if approved is not None and approved.read_only and not analysis.read_only:
            raise SqlRefusedError(
                f"Refused: in the server's SQL mode the statement is not read-only ({analysis.reason}).")

    def _abandon(self, read_only: bool) -> Any:
        """How to stop reading a result early: MySQL drops the connection (closing an unbuffered result would
        read all of it), unless the statement may have changed data that must still be committed."""
        if self._engine.dialect.name in MYSQL_BACKENDS and (read_only or self.read_only):
            return drop_connection
        return close_result

    async def close(self) -> None:
        """Dispose the connection pools."""
        await self._engine.dispose()
        if self._killer is not None:
            await self._killer.dispose()

    async def _run(self, work: Work[T], timeout_s: float | None = None) -> T:
        """Run `work` on a prepared connection within the timeout; wrap driver errors."""
        timeout_s = timeout_s or self.timeout_s
        try:
            async with asyncio.timeout(timeout_s), self._engine.connect() as conn:
                prepared = await prepare(conn, self.read_only, self._kill)
                if prepared.sql_mode is not None:
                    self._sql_mode = prepared.sql_mode
                result = await self._watch(work, conn, prepared)
                if not self.read_only and not conn.invalidated:
                    await conn.commit()
                return result
        except TimeoutError as exc:
            message = f"The query was stopped after the {timeout_s:g} s time limit."
            raise SqlTimeoutError(message) from exc
        except DBAPIError as exc:
            raise SqlExecutionError(_driver_message(exc, self.limits.max_bytes)) from exc
        except SQLAlchemyError as exc:
            raise SqlExecutionError(str(exc).split("\n")[0]) from exc

    async def _watch(self, work: Work[T], conn: AsyncConnection, prepared: Prepared) -> T:
        """Await `work` in a task; if cancelled (or timed out), stop the query in the database first."""
        task = asyncio.ensure_future(work(conn, prepared))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stopping = asyncio.ensure_future(_stop_and_drain(task, prepared.stop))
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


async def _nothing(conn: AsyncConnection, prepared: Prepared) -> None:
    return None


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


def _driver_message(exc: DBAPIError, limit: int) -> str:
    """The database's own error text, without SQLAlchemy's statement echo and links."""
    original = exc.orig if exc.orig is not None else exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if len(args) == 2 and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return f"{args[1]} (error {args[0]})"
    text = str(original).split("\n")[0] or type(original).__name__
    if text == "string or blob too big":  # SQLite over its length limit (set to the result bound)
        return f"{text}: a value over {limit} bytes cannot be read here (DATAAGENT_SQL_MAX_RESULT_BYTES)"
    return text
