"""The audit record of one run_sql call (application/audit.py), kept as the SQL step moves it on.

Without a trail every method does nothing. The record is saved (in place, by its id) where the statement waits
or ends: before it waits for a decision (`pending`), before it is sent to the database (`running`, so nothing
runs without a stored record: a store that cannot save it fails the step), and at its end (a decision that ends
it, a refusal, the execution, a cancel or a failure). A statement approved by the policy costs two saves.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime
from typing import Any

import anyio

from dataagent.adapters.agents.sql import QueryResult, SqlAnalysis, SqlRefusedError, SqlToolError
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import RunContext
from dataagent.domain.approvals import Decision, DecisionSource, DecisionType
from dataagent.domain.audit import SERVER, AuditDecision, AuditOutcome, AuditRecord

log = logging.getLogger("dataagent.audit")

# why the step refused a statement (SqlOutcome.cause) -> the audit's decision
REFUSALS = {
    "guard": AuditDecision.REFUSED_GUARD,
    "read_only": AuditDecision.REFUSED_GUARD,
    "policy": AuditDecision.REFUSED_POLICY,
    "estimate": AuditDecision.REFUSED_ESTIMATE,
}
_OPEN = (AuditOutcome.PENDING, AuditOutcome.RUNNING)


class StatementAudit:
    """One statement's record. `propose` first; then the step's calls, in the order it makes them."""

    def __init__(self, trail: AuditTrail | None, ctx: RunContext) -> None:
        self._trail = trail
        self._ctx = ctx
        self._record: AuditRecord | None = None
        self._started: float | None = None

    @property
    def record(self) -> AuditRecord | None:
        return self._record

    def propose(self, analysis: SqlAnalysis) -> None:
        if self._trail is None:
            return
        ctx = self._ctx
        self._record = self._trail.new(
            ctx.session_id, ctx.run_id, ctx.principal, analysis.sql, analysis.statement_type,
            analysis.read_only, tuple(analysis.tables), end_user=_end_user(ctx),
        )

    async def awaiting_decision(self) -> None:
        if self._record is not None:
            await self._save(self._record)

    async def refused(self, cause: str, reason: str) -> None:
        """Refused by the server before any decision, or (after an edit) with the client's edit kept."""
        if self._record is None:
            return
        if self._record.decision is None:
            decision = REFUSALS.get(cause, AuditDecision.REFUSED_GUARD)
            await self._save(self._record.decided(decision, SERVER, self._now(), outcome=AuditOutcome.REFUSED,
                                                  reason=reason))
        else:
            await self._save(_replace(self._record, outcome=AuditOutcome.REFUSED, reason=reason,
                                      updated_at=self._now()))

    def auto_approved(self) -> None:
        if self._record is not None:
            self._record = self._record.decided(AuditDecision.AUTO_APPROVE, SERVER, self._now(),
                                                outcome=AuditOutcome.RUNNING)

    async def decided(self, decision: Decision, edited_sql: str | None = None) -> None:
        """A decision from Approvals: a client's (approve, edit, reject), a timeout's or a cancel's. One that
        lets the statement go on is saved with its `running` (or an edit's refusal)."""
        if self._record is None:
            return
        kind, outcome, by = _classify(decision, self._ctx.principal)
        reason = decision.message if kind is not AuditDecision.APPROVE else None
        self._record = self._record.decided(kind, by, self._now(), outcome=outcome, reason=reason,
                                            edited_sql=edited_sql)
        if outcome not in _OPEN:
            await self._save(self._record)

    async def running(self, executed_sql: str) -> None:
        if self._record is not None:
            await self._save(self._record.running(executed_sql, self._now()))
        self._started = time.monotonic()

    async def ran(self, result: QueryResult) -> None:
        if self._record is not None:
            await self._save(self._record.executed(self._now(), self._elapsed_ms(), rows=result.row_count))

    async def failed(self, exc: SqlToolError) -> None:
        if self._record is None:
            return
        record = self._record.executed(self._now(), self._elapsed_ms(), error=exc.message)
        if isinstance(exc, SqlRefusedError):  # the database-level guard, on the connection that runs it
            record = _replace(record, outcome=AuditOutcome.REFUSED, reason=exc.message)
        await self._save(record)

    async def interrupted(self, exc: BaseException) -> None:
        """The step ends by an exception: a cancel (of the run) or a failure; saved even under a cancel."""
        record = self._record
        if record is None or record.outcome not in _OPEN:
            return
        elapsed = self._elapsed_ms() if self._started is not None else None
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            record = record.ended_by_cancel(self._now(), elapsed)
        else:
            record = _replace(record, outcome=AuditOutcome.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                              duration_ms=elapsed, updated_at=self._now())
        with anyio.CancelScope(shield=True):
            try:
                await self._save(record)
            except Exception as failure:  # the step's own exception goes on; this one is only logged
                log.warning("the audit record %s could not be saved at the end of its statement: %s",
                            record.audit_id, failure)

    async def _save(self, record: AuditRecord) -> None:
        assert self._trail is not None
        self._record = await self._trail.save(record)

    def _now(self) -> datetime:
        assert self._trail is not None
        return self._trail.now()

    def _elapsed_ms(self) -> float:
        return 0.0 if self._started is None else (time.monotonic() - self._started) * 1000.0


def _classify(decision: Decision, principal: str | None) -> tuple[AuditDecision, AuditOutcome, str | None]:
    if decision.source is DecisionSource.TIMEOUT:
        return AuditDecision.TIMEOUT, AuditOutcome.TIMEOUT, SERVER
    if decision.source is DecisionSource.CANCEL:
        return AuditDecision.CANCEL, AuditOutcome.CANCELLED, SERVER
    if decision.type is DecisionType.REJECT:
        return AuditDecision.REJECT, AuditOutcome.REJECTED, principal
    if decision.type is DecisionType.EDIT and decision.args:
        return AuditDecision.EDIT, AuditOutcome.RUNNING, principal
    return AuditDecision.APPROVE, AuditOutcome.RUNNING, principal


def _end_user(ctx: RunContext) -> str | None:
    """The end user the run acts for, once runs carry one (issue 14); None until then."""
    value = getattr(ctx, "end_user", None)
    return value if isinstance(value, str) else None


def _replace(record: AuditRecord, **changes: Any) -> AuditRecord:
    return dataclasses.replace(record, **changes)
