"""The async engine (asyncmy), and how driver errors become StoreUnavailableError or a retry."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncmy.errors
from sqlalchemy import URL, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolResetState

from dataagent.adapters.mysql.tables import json_dumps
from dataagent.domain.errors import StoreUnavailableError

T = TypeVar("T")

DEADLOCK = 1213
LOCK_WAIT_TIMEOUT = 1205
ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class EngineOptions:
    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout_s: float = 10.0
    pool_recycle_s: int = 1800
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    lock_wait_timeout_s: int = 10


def build_engine(url: str | URL, options: EngineOptions) -> AsyncEngine:
    """An async engine on asyncmy with a pre-pinged, recycled pool and bounded waits (it connects lazily)."""
    parsed = make_url(url) if isinstance(url, str) else url
    parsed = parsed.set(drivername=f"{parsed.get_backend_name()}+asyncmy")
    if "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    engine = create_async_engine(
        parsed,
        pool_size=options.pool_size,
        max_overflow=options.max_overflow,
        pool_timeout=options.pool_timeout_s,
        pool_recycle=options.pool_recycle_s,
        pool_pre_ping=True,
        pool_reset_on_return=None,  # _rollback_if_open does it, when it is needed
        isolation_level="READ COMMITTED",
        json_serializer=json_dumps,
        connect_args={
            "connect_timeout": options.connect_timeout_s,
            "read_timeout": options.read_timeout_s,
            "init_command": f"SET SESSION innodb_lock_wait_timeout={int(options.lock_wait_timeout_s)}, "
                            "time_zone='+00:00'",
        },
    )
    event.listen(engine.sync_engine, "do_connect", _utf8_password)
    event.listen(engine.sync_engine, "reset", _rollback_if_open)
    return engine


def _rollback_if_open(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
    """The pool's reset of a connection it gets back: a ROLLBACK only if a transaction is still open.

    SQLAlchemy's own reset rolls back every connection returned after a commit (a round trip per transaction,
    a quarter of the statements on an answer's path, docs/PERFORMANCE.md); the server's status flags, which
    asyncmy keeps from each reply, say whether one is open. When they cannot be read, it rolls back.
    """
    if state.terminate_only or not state.asyncio_safe:
        return  # the pool closes it (or cannot do I/O here): nothing is reused
    try:
        open_transaction = bool(dbapi_connection._connection.get_transaction_status())
    except Exception:  # noqa: BLE001 - another driver or version: roll back as SQLAlchemy would
        open_transaction = True
    if open_transaction:
        dbapi_connection.rollback()


def _utf8_password(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """asyncmy encodes a str password as Latin-1 (so `中` cannot even be sent); MySQL clients send UTF-8."""
    password = cparams.get("password")
    if isinstance(password, str):
        cparams["password"] = password.encode("utf-8")


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error (wrapped by SQLAlchemy or not), or None."""
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    args = getattr(original, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe(exc: BaseException) -> str:
    """The driver's own words, one line, no traceback (they never include the password)."""
    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} ({args[0]})"
    return str(original).splitlines()[0] if str(original) else type(original).__name__


def is_contention(exc: BaseException) -> bool:
    """A deadlock or a lock wait timeout: InnoDB rolled the transaction (or statement) back."""
    return error_code(exc) in (DEADLOCK, LOCK_WAIT_TIMEOUT)


def is_connection_error(exc: BaseException) -> bool:
    """The store cannot be reached or the connection broke: the server may be down or restarting."""
    if is_contention(exc):
        return False
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(exc, OSError | asyncmy.errors.OperationalError | asyncmy.errors.InterfaceError)


async def driver_cursor(conn: AsyncConnection) -> Any:
    """An asyncmy cursor on the connection under `conn`, inside its transaction (SQLAlchemy still commits).

    For the statements on every answer's path: plain SQL through the driver costs a third of the CPU of the
    same statement through SQLAlchemy Core (no statement building, cache key, execution context or greenlet
    hop; measured in bench/store.py, docs/PERFORMANCE.md). Parameters are bound by the driver (escaped, never
    formatted into the SQL); the caller passes driver-ready values (naive UTC datetimes, JSON text).
    """
    driver: Any = (await conn.get_raw_connection()).driver_connection
    return driver.cursor()


DRIVER_ERRORS = (sa_exc.DBAPIError, sa_exc.TimeoutError, OSError, asyncmy.errors.Error)

# Where the driver reads and parses the wire, and the transports under it. A connection reset mid-packet or a
# cut-short packet makes asyncmy raise what its parser hits there (RuntimeError "Transport does not expose
# socket instance", struct.error, IndexError, AttributeError, UnboundLocalError, IncompleteReadError ...)
# instead of a DB-API error. Not its converters: a bad parameter of ours fails there, and stays a bug.
_WIRE_CODE = ("asyncmy/connection.", "asyncmy/protocol.", "asyncmy/auth.", "asyncmy/charset.",
              "asyncio/streams.", "asyncio/selector_events.", "uvloop/")


def is_broken_wire(exc: BaseException) -> bool:
    """A non-DB-API exception raised inside the driver's wire code: the connection broke, not our code."""
    if not isinstance(exc, Exception) or isinstance(exc, DRIVER_ERRORS):
        return False
    tb, where = exc.__traceback__, ""
    while tb is not None:
        where, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return any(part in where.replace("\\", "/") for part in _WIRE_CODE)


def is_store_failure(exc: BaseException) -> bool:
    """Anything the driver or the pool raises: a DB-API or pool error, an OSError, a broken wire."""
    return isinstance(exc, DRIVER_ERRORS) or is_broken_wire(exc)

Work = Callable[[AsyncConnection, int], Awaitable[T]]


async def transaction(engine: AsyncEngine, work: Work[T], where: str) -> T:
    """Run `work(connection, attempt)` in one transaction and return its result.

    A lost connection is retried once (the pre-pinged pool reconnects), a deadlock or lock wait timeout up
    to ATTEMPTS times; then, like a pool timeout, it is StoreUnavailableError. `work` must be safe to run
    again after a failure at any point, also after a commit whose answer was lost (`attempt` > 0 tells it
    to look for what an earlier attempt may have left). A broken wire (is_broken_wire) counts as a lost
    connection. Other driver errors (bugs) propagate unchanged.
    """
    for attempt in range(ATTEMPTS):
        try:
            async with engine.begin() as conn:
                try:
                    return await work(conn, attempt)
                except Exception as exc:
                    if is_broken_wire(exc):  # never hand this connection out again
                        await conn.invalidate(exc)
                    raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            lost, busy = is_connection_error(exc) or is_broken_wire(exc), is_contention(exc)
            if not (lost or busy or isinstance(exc, sa_exc.TimeoutError)):
                raise
            if isinstance(exc, sa_exc.TimeoutError) or attempt == ATTEMPTS - 1 or (lost and attempt >= 1):
                raise StoreUnavailableError(f"The session store is unavailable ({where})") from exc
            if busy:
                await asyncio.sleep(0.01 * (attempt + 1) * (1 + random.random()))
    raise AssertionError("unreachable")
