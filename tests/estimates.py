"""Shared checks of cost estimates (EXPLAIN before approval) on any SqlDatabase seeded with `big` and `small`.

Each engine's test seeds `big` (BIG_ROWS rows, no index but its primary key `id`) and `small` (a few rows),
then runs these checks through the real SqlStep, with a context that records each approval it is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataagent.adapters.agents.sql import SqlDatabase
from dataagent.adapters.agents.sql_step import EstimateRules, SqlOutcome, SqlStep
from dataagent.application.ports import RunContext
from dataagent.domain.approvals import ApprovalAction, Decision, DecisionType

BIG_ROWS = 20_000
FULL_SCAN = "SELECT count(*) FROM big WHERE note = 'x'"
BY_KEY = "SELECT note FROM big WHERE id = 7"


@dataclass
class Approver:
    """A run context that approves every request and keeps what it was asked."""

    asked: list[ApprovalAction] = field(default_factory=list)

    async def approve(self, action: ApprovalAction) -> Decision:
        self.asked.append(action)
        return Decision(DecisionType.APPROVE)

    def context(self) -> RunContext:
        async def no_history(_: int) -> list[Any]:
            return []

        return RunContext("s1", "r1", "question", {}, self.approve, no_history)


async def approved_estimate(db: SqlDatabase, sql: str, rules: EstimateRules | None = None) -> dict[str, Any]:
    """The `estimate` of the hitl args for `sql`, after checking the statement still ran."""
    outcome, approver = await run_step(db, sql, rules)
    assert outcome.kind == "ran", outcome.text
    assert len(approver.asked) == 1
    estimate: dict[str, Any] = approver.asked[0].args["estimate"]
    return estimate


async def run_step(db: SqlDatabase, sql: str, rules: EstimateRules | None = None) -> tuple[SqlOutcome, Approver]:
    approver = Approver()
    step = SqlStep(db, "always", estimates=rules)
    outcome = await step.run(approver.context(), await step.analyse(sql))
    return outcome, approver


async def check_full_scan_is_named(db: SqlDatabase) -> None:
    estimate = await approved_estimate(db, FULL_SCAN)
    assert estimate["available"] is True
    assert estimate["full_scans"] == ["big"]
    assert estimate["rows"] >= BIG_ROWS * 0.5  # planners estimate; within a factor of two of the truth


async def check_lookup_by_key_is_no_full_scan(db: SqlDatabase) -> None:
    estimate = await approved_estimate(db, BY_KEY)
    assert estimate["available"] is True
    assert estimate["full_scans"] == []


async def check_threshold_refuses_before_approval(db: SqlDatabase) -> None:
    outcome, approver = await run_step(db, FULL_SCAN, EstimateRules(max_rows=1000))
    assert outcome.kind == "refused"
    assert outcome.status == "error"
    assert "DATAAGENT_SQL_MAX_ESTIMATED_ROWS" in outcome.text and "big" in outcome.text
    assert approver.asked == []
    small, _ = await run_step(db, BY_KEY, EstimateRules(max_rows=1000))
    assert small.kind == "ran"


async def check_failing_explain_does_not_block(db: SqlDatabase) -> None:
    estimate = await approved_estimate(db, FULL_SCAN, EstimateRules(max_rows=1000, timeout_s=1e-9))
    assert estimate["available"] is False
    assert estimate["reason"]


ALL_CHECKS = (
    check_full_scan_is_named,
    check_lookup_by_key_is_no_full_scan,
    check_threshold_refuses_before_approval,
    check_failing_explain_does_not_block,
)
