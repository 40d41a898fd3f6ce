"""The real MariaDB/MySQL at 127.0.0.1:3306 for tests: a fresh database per test, admin statements, KILL."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncmy

from tests.services import require_service

MYSQL_HOST = "127.0.0.1"
MYSQL_PORT = 3306
MYSQL_USER = "root"


def require_mysql() -> None:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")


def database_url(database: str, host: str = MYSQL_HOST, port: int = MYSQL_PORT) -> str:
    return f"mysql+asyncmy://{MYSQL_USER}@{host}:{port}/{database}"


@contextlib.asynccontextmanager
async def admin() -> AsyncIterator[Any]:
    """A cursor on a connection of the test's own (not the server's pool), autocommit."""
    conn = await asyncmy.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password="", autocommit=True)
    try:
        async with conn.cursor() as cursor:
            yield cursor
    finally:
        conn.close()


async def admin_query(sql: str, args: Any = None) -> list[tuple[Any, ...]]:
    async with admin() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())


async def create_database(prefix: str = "dataagent_test") -> str:
    """A new empty database `<prefix>_<random>`. Skips (fails under CI) without MariaDB."""
    require_mysql()
    name = f"{prefix}_{secrets.token_hex(6)}"
    await admin_query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


async def drop_database(name: str) -> None:
    await admin_query(f"DROP DATABASE IF EXISTS `{name}`")


@contextlib.asynccontextmanager
async def fresh_database(prefix: str = "dataagent_test") -> AsyncIterator[str]:
    """A new empty database `<prefix>_<random>`, dropped afterwards. Skips (fails under CI) without MariaDB."""
    name = await create_database(prefix)
    try:
        yield name
    finally:
        await drop_database(name)


async def connection_ids(database: str) -> list[int]:
    """The server-side ids of the connections that use `database` (the server's pool)."""
    found = await admin_query(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (database,)
    )
    return [int(row[0]) for row in found]


async def kill_connections(database: str) -> int:
    """KILL every connection using `database`, from a separate admin connection; returns how many."""
    killed = 0
    async with admin() as cursor:
        for connection_id in await connection_ids(database):
            with contextlib.suppress(asyncmy.errors.OperationalError, asyncmy.errors.InternalError):
                await cursor.execute(f"KILL CONNECTION {connection_id}")
                killed += 1
    return killed
