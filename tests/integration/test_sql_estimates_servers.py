"""Cost estimates on the real MariaDB (EXPLAIN FORMAT=JSON) and PostgreSQL (EXPLAIN (FORMAT JSON)) servers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from dataagent.adapters.agents.sql import SqlDatabase
from tests.estimates import ALL_CHECKS, BIG_ROWS
from tests.services import require_service

pytestmark = [pytest.mark.integration]

HOST = "127.0.0.1"
SEED = [
    "CREATE TABLE big (id INT PRIMARY KEY, note VARCHAR(20))",
    "CREATE TABLE small (id INT PRIMARY KEY, big_id INT)",
    f"INSERT INTO big SELECT n, CONCAT('n', n) FROM ({{numbers}}) AS numbers WHERE n <= {BIG_ROWS}",
    "INSERT INTO small VALUES (1, 1), (2, 2), (3, 3)",
]
MARIADB_NUMBERS = "SELECT seq AS n FROM seq_1_to_{rows}"
POSTGRES_NUMBERS = "SELECT generate_series(1, {rows}) AS n"


async def _seeded(server_url: str, database_url: str, numbers: str, create: str, drop: str,
                  analyze: str) -> AsyncIterator[SqlDatabase]:
    admin = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(create)
        seeder = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
        async with seeder.connect() as conn:
            for statement in SEED:
                await conn.exec_driver_sql(statement.format(numbers=numbers.format(rows=BIG_ROWS)))
            await conn.exec_driver_sql(analyze)
        await seeder.dispose()
        database = SqlDatabase(database_url)
        yield database
        await database.close()
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(drop)
        await admin.dispose()


@pytest.fixture
async def mariadb() -> AsyncIterator[SqlDatabase]:
    require_service(HOST, 3306, "MariaDB")
    name = f"dataagent_estimates_{uuid.uuid4().hex[:10]}"
    async for database in _seeded(
        f"mysql+asyncmy://root@{HOST}:3306/", f"mysql+asyncmy://root@{HOST}:3306/{name}", MARIADB_NUMBERS,
        f"CREATE DATABASE `{name}`", f"DROP DATABASE IF EXISTS `{name}`", "ANALYZE TABLE big, small",
    ):
        yield database


@pytest.fixture
async def postgres() -> AsyncIterator[SqlDatabase]:
    require_service(HOST, 5432, "PostgreSQL")
    name = f"dataagent_estimates_{uuid.uuid4().hex[:10]}"
    async for database in _seeded(
        f"postgresql+asyncpg://postgres@{HOST}:5432/postgres", f"postgresql+asyncpg://postgres@{HOST}:5432/{name}",
        POSTGRES_NUMBERS, f'CREATE DATABASE "{name}"', f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        "ANALYZE",
    ):
        yield database


@pytest.mark.mysql
@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
async def test_estimates_on_mariadb(mariadb: SqlDatabase, check: Callable[[SqlDatabase], Awaitable[None]]) -> None:
    await check(mariadb)


@pytest.mark.postgres
@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
async def test_estimates_on_postgresql(
    postgres: SqlDatabase, check: Callable[[SqlDatabase], Awaitable[None]],
) -> None:
    await check(postgres)
