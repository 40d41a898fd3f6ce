"""The repository contract runs against every adapter: the same tests, one parameter per adapter.

MySQL: one database `dataagent_test_<random>` per test session (created, given the schema and dropped here);
each test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import pytest

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.application.ports import SessionRepository
from tests.mysqldb import admin_query, create_database, database_url, drop_database, require_mysql


def run_in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` to the end on a loop of its own (session fixtures live outside the tests' loops)."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0] if result else None


@pytest.fixture(scope="session")
def contract_database() -> Iterator[str]:
    require_mysql()
    name: str = run_in_thread(create_database())
    try:
        yield name
    finally:
        run_in_thread(drop_database(name))


@pytest.fixture(params=["memory", pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.integration])])
async def repo(request: pytest.FixtureRequest) -> AsyncIterator[SessionRepository]:
    if request.param == "memory":
        memory = InMemorySessionRepository()
        await memory.start()
        yield memory
        await memory.close()
        return
    database: str = request.getfixturevalue("contract_database")
    mysql = MySqlSessionRepository.from_url(database_url(database), where=database)
    await mysql.start()
    await admin_query(f"DELETE FROM `{database}`.sessions")  # messages and approvals cascade
    await admin_query(f"DELETE FROM `{database}`.request_keys")
    try:
        yield mysql
    finally:
        await mysql.close()
