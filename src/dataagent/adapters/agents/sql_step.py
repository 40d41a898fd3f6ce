"""The `run_sql` step every engine shares: analyse, screen, ask for approval by policy, apply an edit, run.

    step = SqlStep(database, policy="always", data_policy=None, estimates=EstimateRules(max_rows=None))
    analysis = await step.analyse(sql, ctx.subject)
    yield ToolCallRequested(call_id, "run_sql", analysis.as_args())
    outcome = await step.run(ctx, analysis)
    yield outcome.tool_completed(call_id)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from dataagent.adapters.agents.sql import (
    Estimate,
    QueryResult,
    SqlAnalysis,
    SqlDatabase,
    SqlToolError,
    needs_approval,
)
from dataagent.adapters.agents.sql.policy import DataPolicy
from dataagent.adapters.agents.sql.scope import PolicyScope
from dataagent.adapters.agents.sql_audit import StatementAudit
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import RunContext
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.domain.approvals import ApprovalAction, DecisionSource, DecisionType
from dataagent.domain.events import ToolCompleted

RUN_SQL = "run_sql"
OutcomeKind = Literal["ran", "rejected", "timed_out", "refused", "failed"]


@dataclass(frozen=True, slots=True)
class EstimateRules:
    """DATAAGENT_SQL_MAX_ESTIMATED_ROWS (None: no limit) and DATAAGENT_SQL_ESTIMATE_TIMEOUT."""

    max_rows: int | None = None
    timeout_s: float = 2.0


@dataclass(frozen=True, slots=True)
class SqlOutcome:
    """How a run_sql call ended. `text` is the tool result (for the client and the model)."""

    kind: OutcomeKind
    text: str
    sql: str
    detail: str = ""
    result: QueryResult | None = None
    edited: bool = False
    cause: str = ""  # a refusal's: guard, read_only, policy or estimate (the audit's decision)
    duration_s: float = 0.0  # the time the statement ran in the database (ran or failed)

    @property
    def status(self) -> str:
        return "success" if self.kind == "ran" else "error"

    def tool_completed(self, call_id: str) -> ToolCompleted:
        table = self.result.table() if self.result is not None else None
        sql = self.sql if self.kind == "ran" else None
        return ToolCompleted(call_id, RUN_SQL, self.text, self.status, table=table, sql=sql)


class SqlStep:
    """Runs one statement on `database` with the approval DATAAGENT_HITL_POLICY asks for.

    What the guard refuses outright (executable comments, transaction control, SET, account-revealing SHOW
    forms and system schemas; see sql/guard.py) never reaches approval, whatever the settings. On a
    read-only database a statement that is not a single plain read is refused before it reaches approval
    too (nobody is asked to approve what cannot run). An edit is re-analysed and re-screened. Then the data
    policy (DATAAGENT_DATA_POLICY, sql/scope.py) refuses the statement or rewrites it, before approval too.
    Before approval the planner's estimate (EXPLAIN, sql/estimate.py) of the statement as it will run joins
    the hitl args as `estimate`; a statement over `estimates.max_rows` is refused before approval (and after
    an edit, which goes through the policy and the estimate again), with the reason as its result. No
    decision before DATAAGENT_HITL_TIMEOUT ends the step as `timed_out`, said as such (not as a reject).
    With an audit trail (DATAAGENT_AUDIT_*), each call leaves one audit record, saved as it progresses.
    """

    def __init__(
        self, database: SqlDatabase, policy: str = "always", *, place: str = "the database",
        data_policy: DataPolicy | None = None, estimates: EstimateRules | None = None,
        audit: AuditTrail | None = None, telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING,
    ) -> None:
        self.database = database
        self.audit = audit
        self._telemetry, self._tracing = telemetry, tracing
        self.scope = PolicyScope(database, data_policy)
        self._policy = policy
        self._place = place
        self._estimates = estimates or EstimateRules()

    async def analyse(self, sql: str, principal: str | None = None) -> SqlAnalysis:
        """The analysis in the server's quoting mode (MySQL: its sql_mode), then under the principal's policy."""
        return await self.scope.apply(await self.database.analyse(sql), principal)

    async def run(self, ctx: RunContext, analysis: SqlAnalysis) -> SqlOutcome:
        """Approve (if the policy asks), then run; cancellation stops the query in the database."""
        audit = StatementAudit(self.audit, ctx)
        audit.propose(analysis)
        try:
            outcome = await self._run(ctx, analysis, audit)
        except BaseException as exc:
            await audit.interrupted(exc)
            raise
        if outcome.kind == "refused":
            await audit.refused(outcome.cause, outcome.detail)
        rows = outcome.result.row_count if outcome.result is not None else 0
        self._telemetry.sql_statement(analysis.statement_type, outcome.kind, outcome.duration_s, rows)
        return outcome

    async def _run(self, ctx: RunContext, analysis: SqlAnalysis, audit: StatementAudit) -> SqlOutcome:
        if refusal := self._refusal(analysis) or await self._too_costly(analysis):
            return refusal
        edited = False
        if needs_approval(analysis, self._policy):
            estimate = await self._estimate(analysis)
            if refusal := self._over_limit(analysis, estimate):
                return refusal
            args = {**analysis.as_args(), "estimate": estimate.as_args()}
            await audit.awaiting_decision()
            decision = await ctx.request_approval(ApprovalAction(
                RUN_SQL, args, f"Run this {analysis.statement_type} statement on {self._place}",
            ))
            if decision.source is DecisionSource.TIMEOUT:
                await audit.decided(decision)
                return SqlOutcome("timed_out", "Not run: no decision on this statement came before the approval "
                                  "timed out.", analysis.sql, "the approval timed out")
            if decision.type is DecisionType.REJECT:
                await audit.decided(decision)
                reason = decision.message or "no reason given"
                return SqlOutcome("rejected", f"The user rejected this statement: {reason}", analysis.sql, reason)
            if decision.type is DecisionType.EDIT and decision.args:
                sql = str({**analysis.as_args(), **decision.args}.get("sql", analysis.sql))
                await audit.decided(decision, edited_sql=sql)
                analysis, edited = await self.analyse(sql, ctx.subject), True
                if refusal := self._refusal(analysis, edited=True) or await self._too_costly(analysis, True):
                    return refusal
            else:
                await audit.decided(decision)
        else:
            audit.auto_approved()
        return await self._execute(ctx, analysis, audit, edited)

    async def _execute(self, ctx: RunContext, analysis: SqlAnalysis, audit: StatementAudit, edited: bool
                       ) -> SqlOutcome:
        executed = analysis.executed_sql or analysis.sql
        await audit.running(executed)
        began = time.perf_counter()
        attributes = {"session_id": ctx.session_id, "run_id": ctx.run_id, "db.operation": analysis.statement_type}
        try:
            with self._tracing.span("dataagent.sql", attributes):
                result = await self.database.run_query(executed, approved=analysis)
        except SqlToolError as exc:
            await audit.failed(exc)
            return SqlOutcome("failed", f"Error: {exc}", analysis.sql, str(exc), edited=edited,
                              duration_s=time.perf_counter() - began)
        await audit.ran(result)
        return SqlOutcome("ran", result.as_text(), analysis.sql, result=result, edited=edited,
                          duration_s=time.perf_counter() - began)

    async def _estimate(self, analysis: SqlAnalysis) -> Estimate:
        return await self.database.estimate(analysis, self._estimates.timeout_s)

    async def _too_costly(self, analysis: SqlAnalysis, edited: bool = False) -> SqlOutcome | None:
        """With a row limit and no approval to come (or after an edit), the estimate is checked here."""
        if self._estimates.max_rows is None or (needs_approval(analysis, self._policy) and not edited):
            return None
        return self._over_limit(analysis, await self._estimate(analysis), edited)

    def _over_limit(self, analysis: SqlAnalysis, estimate: Estimate, edited: bool = False) -> SqlOutcome | None:
        limit = self._estimates.max_rows
        if not estimate.over(limit):
            return None
        scans = f", reading all of {', '.join(estimate.full_scans)}" if estimate.full_scans else ""
        reason = (f"the database estimates it handles about {estimate.rows} rows{scans}, over the limit of "
                  f"{limit} (DATAAGENT_SQL_MAX_ESTIMATED_ROWS); filter on an indexed column or aggregate first")
        return SqlOutcome("refused", f"Refused: {reason}.", analysis.sql, reason, edited=edited, cause="estimate")

    def _refusal(self, analysis: SqlAnalysis, edited: bool = False) -> SqlOutcome | None:
        if analysis.refusal is not None:
            cause = "policy" if analysis.policy is not None else "guard"
            return SqlOutcome("refused", f"Refused: {analysis.refusal}.", analysis.sql, analysis.refusal,
                              edited=edited, cause=cause)
        if not self.database.read_only or analysis.read_only:
            return None
        reason = f"Refused: only read-only queries are allowed ({analysis.reason})."
        return SqlOutcome("refused", reason, analysis.sql, analysis.reason or "", edited=edited, cause="read_only")
