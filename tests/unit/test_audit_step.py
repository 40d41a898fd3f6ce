"""The SQL step and its audit record: nothing reaches the database unless its record is stored first."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dataagent.adapters.agents.sql import SqlDatabase, sqlite_url
from dataagent.adapters.agents.sql_step import SqlStep
from dataagent.adapters.memory.audit import InMemoryAuditLog
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import RunContext
from dataagent.domain.approvals import ApprovalAction, Decision
from dataagent.domain.audit import AuditPage, AuditQuery, AuditRecord
from dataagent.domain.errors import StoreUnavailableError


class BrokenAuditLog(InMemoryAuditLog):
    """An audit store that is down: every save fails."""

    async def save(self, record: AuditRecord) -> None:
        raise StoreUnavailableError("The session store is unavailable (test)")


class CountingAuditLog(InMemoryAuditLog):
    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(self, record: AuditRecord) -> None:
        self.saves += 1
        await super().save(record)


def context() -> RunContext:
    async def never_asked(_: ApprovalAction) -> Decision:
        raise AssertionError("the policy asks no approval")

    async def no_history(_: int) -> list[Any]:
        return []

    return RunContext("s1", "r1", "q", {}, never_asked, no_history, principal="alice")


@pytest.fixture
def writable(tmp_path: Path) -> str:
    path = tmp_path / "w.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.commit()
    return str(path)


def rows_of(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


async def test_a_statement_whose_record_cannot_be_stored_never_runs(writable: str) -> None:
    db = SqlDatabase(sqlite_url(writable, read_only=False), read_only=False)
    step = SqlStep(db, "never", audit=AuditTrail(BrokenAuditLog(), SystemClock(), UuidIdGenerator()))
    try:
        with pytest.raises(StoreUnavailableError):
            await step.run(context(), await step.analyse("INSERT INTO t (id) VALUES (1)"))
    finally:
        await db.close()
    assert rows_of(writable) == 0


async def test_a_statement_the_policy_approves_costs_two_saves_and_ends_as_one_record(writable: str) -> None:
    db = SqlDatabase(sqlite_url(writable, read_only=False), read_only=False)
    log = CountingAuditLog()
    step = SqlStep(db, "never", audit=AuditTrail(log, SystemClock(), UuidIdGenerator()))
    try:
        outcome = await step.run(context(), await step.analyse("INSERT INTO t (id) VALUES (1)"))
    finally:
        await db.close()
    assert outcome.kind == "ran" and rows_of(writable) == 1, outcome.text
    page: AuditPage = await log.find(AuditQuery())
    [record] = page.records
    assert (record.outcome, record.decision, record.read_only, record.statement_type) == (
        "ran", "auto_approve", False, "INSERT")
    assert isinstance(record.decided_at, datetime) and log.saves == 2
