"""The AuditLog contract: every adapter (memory, MySQL) keeps, replaces, pages, filters and expires alike."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataagent.adapters.memory.audit import InMemoryAuditLog
from dataagent.adapters.mysql.audit import MySqlAuditLog
from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.application.audit import AuditLog, AuditService, AuditTrail
from dataagent.domain.audit import (
    SERVER,
    AuditDecision,
    AuditOutcome,
    AuditQuery,
    AuditRecord,
    sql_hash,
)
from dataagent.domain.errors import InvalidInputError
from tests.mysqldb import admin_query, database_url

T0 = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
UNICODE = "SELECT '你好 🌏 «ÆØÅ»' AS \"列\" -- ∑"
OUTCOMES = list(AuditOutcome)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def record(audit_id: str, when: datetime = T0, **kwargs: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "session_id": "s1", "run_id": "run_1", "principal": "alice", "sql": f"SELECT {audit_id!r}",
        "statement_type": "SELECT", "read_only": True, "tables": ("customers",),
    }
    values.update(kwargs)
    return AuditRecord(audit_id, when, **values)


class FixedClock:
    def __init__(self, now: datetime) -> None:
        self.value = now

    def now(self) -> datetime:
        return self.value


class CountingIds:
    def __init__(self) -> None:
        self.n = 0

    def new_id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n:06d}"


async def _mysql_log(database: str) -> tuple[AuditLog, Callable[[], Awaitable[None]]]:
    repository = MySqlSessionRepository.from_url(database_url(database), where=database)
    await repository.start()  # creates every table, sql_audit with them
    await admin_query(f"DELETE FROM `{database}`.sql_audit")
    return MySqlAuditLog(repository.engine), repository.close


@pytest.fixture(params=["memory", pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.integration])])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[AuditLog]:
    if request.param == "memory":
        yield InMemoryAuditLog()
        return
    audit_log, close = await _mysql_log(request.getfixturevalue("contract_database"))
    try:
        yield audit_log
    finally:
        await close()


async def test_every_field_round_trips_with_unicode_and_aware_utc_times(log: AuditLog) -> None:
    full = record(
        "aud_1", sql=UNICODE, principal="principal ✨", end_user="user 👤", tables=("客户", "orders"),
        outcome=AuditOutcome.RAN, decision=AuditDecision.EDIT, decided_by="principal ✨", decided_at=at(1),
        edited_sql="SELECT 2", executed_sql="SELECT 2 LIMIT 200", reason="narrower", duration_ms=12.345,
        rows=7, error=None, cancelled=False, updated_at=at(2),
    )
    await log.save(full)
    got = await log.get("aud_1")
    assert got == full
    assert got is not None and got.sql_hash == sql_hash(UNICODE) and got.created_at.tzinfo is not None
    assert await log.get("nope") is None


async def test_saving_a_record_again_replaces_it_in_place(log: AuditLog) -> None:
    first = record("aud_1")
    await log.save(first)
    later = dataclasses.replace(first, outcome=AuditOutcome.CANCELLED, cancelled=True,
                                decision=AuditDecision.CANCEL, decided_by=SERVER, decided_at=at(5))
    await log.save(later)
    page = await log.find(AuditQuery())
    assert page.records == [later] and not page.has_more


async def test_pages_run_oldest_first_and_a_cursor_breaks_ties_by_id(log: AuditLog) -> None:
    for audit_id, when in [("b", at(0)), ("a", at(0)), ("c", at(-1)), ("d", at(3))]:
        await log.save(record(audit_id, when))
    first = await log.find(AuditQuery(limit=2))
    assert [r.audit_id for r in first.records] == ["c", "a"] and first.has_more
    second = await log.find(AuditQuery(limit=2, after=first.next_cursor))
    assert [r.audit_id for r in second.records] == ["b", "d"] and not second.has_more
    assert second.next_cursor is None


async def test_filters_select_by_time_session_principal_and_outcome(log: AuditLog) -> None:
    await log.save(record("r1", at(0), session_id="s1", principal="alice", outcome=AuditOutcome.RAN))
    await log.save(record("r2", at(10), session_id="s2", principal="bob", outcome=AuditOutcome.REJECTED))
    await log.save(record("r3", at(20), session_id="s1", principal=None, outcome=AuditOutcome.REFUSED))

    async def ids(**filters: Any) -> list[str]:
        return [r.audit_id for r in (await log.find(AuditQuery(**filters))).records]

    assert await ids(since=at(10)) == ["r2", "r3"]
    assert await ids(until=at(10)) == ["r1"]
    assert await ids(since=at(5), until=at(15)) == ["r2"]
    assert await ids(session_id="s1") == ["r1", "r3"]
    assert await ids(principal="bob") == ["r2"]
    assert await ids(outcome=AuditOutcome.REFUSED) == ["r3"]
    assert await ids(session_id="s1", outcome=AuditOutcome.REJECTED) == []


async def test_delete_before_removes_only_older_records_and_at_most_limit(log: AuditLog) -> None:
    for n in range(5):
        await log.save(record(f"r{n}", at(n)))
    assert await log.delete_before(at(3), limit=2) == 2
    assert await log.delete_before(at(3), limit=10) == 1
    assert await log.delete_before(at(3), limit=10) == 0
    assert [r.audit_id for r in (await log.find(AuditQuery())).records] == ["r3", "r4"]


async def test_the_retention_purge_deletes_records_older_than_the_retention_days(log: AuditLog) -> None:
    now = at(90 * 86400 + 60)
    await log.save(record("old", at(0)))
    await log.save(record("young", at(120)))
    assert await AuditService(log, FixedClock(now), retention_days=90).purge() == 1
    assert [r.audit_id for r in (await log.find(AuditQuery())).records] == ["young"]


async def test_the_trail_stores_valid_text_for_a_lone_surrogate(log: AuditLog) -> None:
    trail = AuditTrail(log, FixedClock(T0), CountingIds())
    proposed = await trail.save(trail.new("s1", "run_1", "alice", "SELECT '\ud800'", "SELECT", True, ("t\udfff",)))
    saved = await trail.save(dataclasses.replace(proposed, error="bad \udc80 byte"))
    got = await log.get(proposed.audit_id)
    assert got == saved and got.sql == "SELECT '\ufffd'" and got.tables == ("t\ufffd",)
    assert got.sql_hash == sql_hash("SELECT '\ufffd'")
    assert got.error == "bad \ufffd byte"


def test_a_malformed_cursor_or_a_naive_time_is_invalid_input() -> None:
    for bad in ("x", "12", "_a", "12a_b", "9" * 30 + "_a"):
        with pytest.raises(InvalidInputError):
            AuditQuery(after=bad)
    with pytest.raises(InvalidInputError):
        AuditQuery(since=datetime(2026, 1, 1))


async def test_the_memory_log_forgets_the_oldest_record_past_its_bound() -> None:
    log = InMemoryAuditLog(max_records=3)
    for n in range(5):
        await log.save(record(f"r{n}", at(n)))
    await log.save(record("r3", at(3), outcome=AuditOutcome.RAN))  # a replacement does not evict
    assert [r.audit_id for r in (await log.find(AuditQuery())).records] == ["r2", "r3", "r4"]


# ------------------------------------------------------------------------------- pagination property

records_strategy = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from(["s1", "s2"]), st.sampled_from(["alice", "bob", None]),
              st.sampled_from(OUTCOMES[:4])),
    max_size=14,
)


@pytest.fixture(params=["memory", pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.integration])])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=records_strategy, limit=st.integers(1, 5), session=st.sampled_from([None, "s1"]),
       principal=st.sampled_from([None, "alice"]), outcome=st.sampled_from([None, *OUTCOMES[:2]]),
       since=st.sampled_from([None, 1]), until=st.sampled_from([None, 3]))
def test_property_paging_by_cursor_yields_every_selected_record_once_in_order(
    request: pytest.FixtureRequest, store_kind: str, rows: list[tuple[int, str, str | None, AuditOutcome]],
    limit: int, session: str | None, principal: str | None, outcome: AuditOutcome | None,
    since: int | None, until: int | None,
) -> None:
    database = request.getfixturevalue("contract_database") if store_kind == "mysql" else ""
    records = [record(f"id{(n * 37) % 101:03d}_{n}", at(second), session_id=sid, principal=who, outcome=state)
               for n, (second, sid, who, state) in enumerate(rows)]
    filters: dict[str, Any] = {"session_id": session, "principal": principal, "outcome": outcome,
                               "since": at(since) if since is not None else None,
                               "until": at(until) if until is not None else None}
    expected = sorted((r for r in records if AuditQuery(**filters).matches(r)),
                      key=lambda r: (r.created_at, r.audit_id))

    async def paged() -> list[AuditRecord]:
        if store_kind == "mysql":
            log, close = await _mysql_log(database)
        else:
            log, close = InMemoryAuditLog(), _nothing
        try:
            for r in records:
                await log.save(r)
            seen: list[AuditRecord] = []
            after: str | None = None
            while True:
                page = await log.find(AuditQuery(limit=limit, after=after, **filters))
                assert len(page.records) <= limit
                seen += page.records
                if not page.has_more:
                    return seen
                after = page.next_cursor
        finally:
            await close()

    assert asyncio.run(paged()) == expected


async def _nothing() -> None:
    return None


async def test_closing_open_records_of_a_lost_run_marks_only_that_runs_open_ones(log: AuditLog) -> None:
    await log.save(record("a", at(0), run_id="run_1", outcome=AuditOutcome.RUNNING))
    await log.save(record("b", at(1), run_id="run_1", outcome=AuditOutcome.RAN))
    await log.save(record("c", at(2), run_id="run_2", outcome=AuditOutcome.PENDING))
    await log.save(record("d", at(3), run_id="run_1", outcome=AuditOutcome.PENDING))
    service = AuditService(log, FixedClock(at(60)), retention_days=90)

    assert await service.close_open("worker_lost", "s1", "run_1") == 2
    by_id = {r.audit_id: r for r in (await log.find(AuditQuery())).records}
    assert (by_id["a"].outcome, by_id["d"].outcome) == ("failed", "failed")
    assert by_id["a"].error is not None and by_id["a"].error.startswith("worker_lost")
    assert (by_id["b"].outcome, by_id["c"].outcome) == ("ran", "pending")

    assert await service.close_open("interrupted") == 1  # local start-up: every open one
    assert not any(r.is_open for r in (await log.find(AuditQuery())).records)
