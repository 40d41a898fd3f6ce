"""Cost estimates on SQLite (EXPLAIN QUERY PLAN), and the plan readers on documents of every engine."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest

from dataagent.adapters.agents.sql import SqlDatabase, sqlite_url
from dataagent.adapters.agents.sql.estimate import Estimate, estimate_cost
from dataagent.adapters.agents.sql_step import EstimateRules, SqlStep
from dataagent.domain.approvals import ApprovalAction, Decision, DecisionType
from tests.estimates import ALL_CHECKS, BIG_ROWS, BY_KEY, FULL_SCAN, Approver, approved_estimate


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    path = tmp_path / "estimates.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("CREATE TABLE small (id INTEGER PRIMARY KEY, big_id INTEGER)")
        conn.executemany("INSERT INTO big VALUES (?, ?)", ((i, f"n{i}") for i in range(1, BIG_ROWS + 1)))
        conn.executemany("INSERT INTO small VALUES (?, ?)", ((i, i) for i in range(1, 4)))
        conn.execute("CREATE VIEW big_view AS SELECT * FROM big")
        conn.commit()
    database = SqlDatabase(sqlite_url(str(path)))
    yield database
    await database.close()


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda c: c.__name__)
async def test_estimates_on_sqlite(db: SqlDatabase, check: Callable[[SqlDatabase], Awaitable[None]]) -> None:
    await check(db)


async def test_an_aliased_scan_is_named_by_its_table(db: SqlDatabase) -> None:
    estimate = await approved_estimate(db, "SELECT b.note FROM big AS b JOIN small s ON s.big_id = b.id")
    assert estimate["full_scans"] == ["small"]


async def test_a_scan_through_a_cte_names_the_table_not_the_cte(db: SqlDatabase) -> None:
    sql = "WITH notes AS MATERIALIZED (SELECT note FROM big) SELECT count(*) FROM notes"
    estimate = await approved_estimate(db, sql)
    assert "big" in estimate["full_scans"]
    assert "notes" not in estimate["full_scans"]


async def test_statements_explain_cannot_take_get_an_unavailable_estimate(db: SqlDatabase) -> None:
    estimate = await approved_estimate(db, "EXPLAIN QUERY PLAN SELECT * FROM big")
    assert estimate == {"available": False, "reason": "no estimate for EXPLAIN statements"}


async def test_a_driver_error_in_explain_is_an_unavailable_estimate() -> None:
    async def failing(_work: object) -> Estimate:
        raise RuntimeError("EXPLAIN is not allowed here")

    estimate = await estimate_cost(failing, "postgres", "SELECT 1", "SELECT")
    assert estimate.as_args() == {"available": False, "reason": "EXPLAIN is not allowed here"}


@pytest.mark.parametrize(
    ("dialect", "document", "rows", "scans"),
    [
        ("postgres", [{"Plan": {"Node Type": "Aggregate", "Plan Rows": 1, "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "big", "Alias": "b", "Plan Rows": 20000}]}}], 20000, ["big"]),
        ("postgres", [{"Plan": {"Node Type": "Nested Loop", "Plan Rows": 60, "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "small", "Plan Rows": 3},
            {"Node Type": "Index Scan", "Relation Name": "big", "Plan Rows": 20}]}}], 60, ["small"]),
        ("mysql", {"query_block": {"select_id": 1, "nested_loop": [
            {"table": {"table_name": "s", "access_type": "ALL", "rows": 3}},
            {"table": {"table_name": "b", "access_type": "eq_ref", "rows": 1}}]}}, 3, ["small"]),
        ("mysql", {"query_block": {"select_id": 1, "table": {
            "table_name": "big", "access_type": "ALL", "rows_examined_per_scan": 20000}}}, 20000, ["big"]),
    ],
)
async def test_plan_documents_are_read(dialect: str, document: object, rows: int, scans: list[str]) -> None:
    async def planned(_work: object) -> Estimate:
        from dataagent.adapters.agents.sql import estimate as module

        if dialect == "postgres":
            return module._postgres(document)
        assert isinstance(document, dict)
        return module._mysql(document, "SELECT b.note FROM big AS b JOIN small AS s ON s.big_id = b.id")

    estimate = await estimate_cost(planned, dialect, "SELECT 1", "SELECT")
    assert (estimate.rows, list(estimate.full_scans)) == (rows, scans)


async def test_the_limit_holds_when_no_approval_is_asked(db: SqlDatabase) -> None:
    step = SqlStep(db, "never", estimates=EstimateRules(max_rows=1000))
    outcome = await step.run(Approver().context(), await step.analyse(FULL_SCAN))
    assert outcome.kind == "refused" and "DATAAGENT_SQL_MAX_ESTIMATED_ROWS" in outcome.text


async def test_an_edited_statement_is_estimated_again(db: SqlDatabase) -> None:
    class EditToFullScan(Approver):
        async def approve(self, action: ApprovalAction) -> Decision:
            self.asked.append(action)
            return Decision(DecisionType.EDIT, {"sql": FULL_SCAN})

    approver = EditToFullScan()
    step = SqlStep(db, "always", estimates=EstimateRules(max_rows=1000))
    outcome = await step.run(approver.context(), await step.analyse(BY_KEY))
    assert len(approver.asked) == 1
    assert outcome.kind == "refused" and outcome.edited and "about 20000 rows" in outcome.text
