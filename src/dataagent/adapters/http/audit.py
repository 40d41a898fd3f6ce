"""GET /api/v1/audit: the SQL audit trail, for keys with the `admin` scope; a page of JSON, or JSON lines."""


from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from dependency_injector.wiring import inject
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from dataagent.adapters.http.auth import require_scope
from dataagent.adapters.http.injection import Provide
from dataagent.adapters.http.inputs import EdgeRoute, dumps
from dataagent.adapters.http.schemas import ErrorBody
from dataagent.application.audit import AuditService
from dataagent.application.auth import ADMIN
from dataagent.domain.audit import AuditDecision, AuditOutcome, AuditPage, AuditQuery, AuditRecord

JSONL = "application/x-ndjson"
EXPORT_BATCH = 500

Admin = Annotated[str, Depends(require_scope(ADMIN))]
Audit = Annotated[AuditService, Depends(Provide["audit_service"])]
router = APIRouter(tags=["audit"], route_class=EdgeRoute, responses={
    code: {"model": ErrorBody} for code in (401, 403, 422, 503)
})


class AuditRecordOut(BaseModel):
    audit_id: str
    created_at: datetime = Field(description="When the agent proposed the statement")
    updated_at: datetime | None
    session_id: str
    run_id: str
    principal: str | None
    end_user: str | None = Field(description="The end user the run acted for (none yet)")
    sql: str = Field(description="The statement as the agent proposed it")
    sql_hash: str = Field(description="SHA-256 of `sql` (UTF-8), hex")
    statement_type: str
    read_only: bool
    tables: list[str]
    outcome: AuditOutcome
    decision: AuditDecision | None
    decided_by: str | None = Field(description="The principal of a client's decision; `server` for the others")
    decided_at: datetime | None
    edited_sql: str | None = Field(description="The statement an edit decision put in its place")
    executed_sql: str | None = Field(description="What was sent to the database (edit and data policy applied)")
    reason: str | None = Field(description="Why it was refused, or the reject's message")
    duration_ms: float | None
    rows: int | None
    error: str | None
    cancelled: bool

    @classmethod
    def from_domain(cls, record: AuditRecord) -> "AuditRecordOut":
        return cls(
            audit_id=record.audit_id, created_at=record.created_at, updated_at=record.updated_at,
            session_id=record.session_id, run_id=record.run_id, principal=record.principal,
            end_user=record.end_user, sql=record.sql, sql_hash=record.sql_hash,
            statement_type=record.statement_type, read_only=record.read_only, tables=list(record.tables),
            outcome=record.outcome, decision=record.decision, decided_by=record.decided_by,
            decided_at=record.decided_at, edited_sql=record.edited_sql, executed_sql=record.executed_sql,
            reason=record.reason, duration_ms=record.duration_ms, rows=record.rows, error=record.error,
            cancelled=record.cancelled,
        )


class AuditList(BaseModel):
    records: list[AuditRecordOut]
    limit: int
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `after` for the next page (null on the last one)")


async def audit_query(
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(min_length=1, max_length=200,
                                       description="a cursor (`next_cursor`): the records after it")] = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601 with a zone)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601 with a zone)")] = None,
    session_id: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    principal: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    outcome: AuditOutcome | None = None,
) -> AuditQuery:
    return AuditQuery(limit=limit, after=after, since=since, until=until, session_id=session_id,
                      principal=principal, outcome=outcome)


@router.get("/audit", response_model=AuditList, responses={200: {"content": {JSONL: {}}}})
@inject
async def list_audit(
    request: Request,
    _admin: Admin,
    service: Audit,
    query: Annotated[AuditQuery, Depends(audit_query)],
    format: Annotated[str | None, Query(pattern="^(json|jsonl)$",
                                        description="jsonl: every matching record as JSON lines")] = None,
) -> Any:
    """Every SQL statement the agent proposed, oldest first: its analysis, decision and execution."""
    if format == "jsonl" or (format is None and JSONL in request.headers.get("accept", "")):
        first = await service.page(_batch(query, query.after))  # a store error is still a 503 here
        return StreamingResponse(_lines(service, query, first), media_type=JSONL)
    page = await service.page(query)
    return AuditList(records=[AuditRecordOut.from_domain(r) for r in page.records], limit=query.limit,
                     has_more=page.has_more, next_cursor=page.next_cursor)


async def _lines(service: AuditService, query: AuditQuery, page: AuditPage) -> AsyncIterator[bytes]:
    """Every record the filters select after the cursor, a JSON object a line, read in batches."""
    while True:
        for record in page.records:
            yield dumps(AuditRecordOut.from_domain(record).model_dump(mode="json")) + b"\n"
        if not page.has_more or not page.records:
            return
        page = await service.page(_batch(query, page.records[-1].cursor))


def _batch(query: AuditQuery, after: str | None) -> AuditQuery:
    return AuditQuery(limit=EXPORT_BATCH, after=after, since=query.since, until=query.until,
                      session_id=query.session_id, principal=query.principal, outcome=query.outcome)
