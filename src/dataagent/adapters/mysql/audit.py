"""The MySQL audit log: the `sql_audit` table (tables.py), kept apart from the sessions it outlives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dataagent.adapters.mysql.engine import transaction
from dataagent.adapters.mysql.tables import sql_audit
from dataagent.application.audit import AuditLog
from dataagent.domain.audit import AuditDecision, AuditOutcome, AuditPage, AuditQuery, AuditRecord

_ORDER = (sql_audit.c.created_at, sql_audit.c.audit_id)


class MySqlAuditLog(AuditLog):
    """On the store's engine (the table is created with the others by the repository's start)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, record: AuditRecord) -> None:
        values = _row(record)
        changes = {k: v for k, v in values.items() if k not in ("audit_id", "created_at")}

        async def work(conn: AsyncConnection, attempt: int) -> None:  # an upsert: safe to run again
            await conn.execute(insert(sql_audit).values(**values).on_duplicate_key_update(**changes))

        await transaction(self._engine, work, "audit save")

    async def get(self, audit_id: str) -> AuditRecord | None:
        async def work(conn: AsyncConnection, attempt: int) -> AuditRecord | None:
            row = (await conn.execute(select(sql_audit).where(sql_audit.c.audit_id == audit_id))).first()
            return None if row is None else _record(row._mapping)

        return await transaction(self._engine, work, "audit get")

    async def find(self, query: AuditQuery) -> AuditPage:
        statement = select(sql_audit).where(*_filters(query)).order_by(*_ORDER).limit(query.limit + 1)

        async def work(conn: AsyncConnection, attempt: int) -> AuditPage:
            found = [_record(row._mapping) for row in await conn.execute(statement)]
            return AuditPage(found[: query.limit], len(found) > query.limit)

        return await transaction(self._engine, work, "audit find")

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        async def work(conn: AsyncConnection, attempt: int) -> int:
            ids = (await conn.execute(select(sql_audit.c.audit_id).where(sql_audit.c.created_at < cutoff)
                                      .order_by(*_ORDER).limit(limit))).scalars().all()
            if ids:
                await conn.execute(delete(sql_audit).where(sql_audit.c.audit_id.in_(ids)))
            return len(ids)

        return await transaction(self._engine, work, "audit delete_before")


def _filters(query: AuditQuery) -> list[Any]:
    where: list[Any] = []
    if (position := query.position) is not None:
        at, audit_id = position
        where.append(or_(sql_audit.c.created_at > at,
                         and_(sql_audit.c.created_at == at, sql_audit.c.audit_id > audit_id)))
    if query.since is not None:
        where.append(sql_audit.c.created_at >= query.since)
    if query.until is not None:
        where.append(sql_audit.c.created_at < query.until)
    if query.session_id is not None:
        where.append(sql_audit.c.session_id == query.session_id)
    if query.principal is not None:
        where.append(sql_audit.c.principal == query.principal)
    if query.outcome is not None:
        where.append(sql_audit.c.outcome == query.outcome.value)
    return where


def _row(record: AuditRecord) -> dict[str, Any]:
    return {
        "audit_id": record.audit_id, "created_at": record.created_at, "updated_at": record.updated_at,
        "session_id": record.session_id, "run_id": record.run_id, "principal": record.principal,
        "end_user": record.end_user, "statement_hash": record.sql_hash, "statement": record.sql,
        "statement_type": record.statement_type, "read_only": record.read_only,
        "table_names": list(record.tables), "outcome": record.outcome.value,
        "decision": record.decision.value if record.decision is not None else None,
        "decided_by": record.decided_by, "decided_at": record.decided_at, "edited_statement": record.edited_sql,
        "executed_statement": record.executed_sql, "reason": record.reason, "duration_ms": record.duration_ms,
        "row_count": record.rows, "error": record.error, "cancelled": record.cancelled,
    }


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        audit_id=row["audit_id"], created_at=row["created_at"], session_id=row["session_id"],
        run_id=row["run_id"], principal=row["principal"], sql=row["statement"],
        statement_type=row["statement_type"], read_only=bool(row["read_only"]),
        tables=tuple(row["table_names"] or ()), end_user=row["end_user"], sql_hash=row["statement_hash"],
        outcome=AuditOutcome(row["outcome"]),
        decision=AuditDecision(row["decision"]) if row["decision"] is not None else None,
        decided_by=row["decided_by"], decided_at=row["decided_at"], edited_sql=row["edited_statement"],
        reason=row["reason"], executed_sql=row["executed_statement"], duration_ms=row["duration_ms"],
        rows=row["row_count"], error=row["error"], cancelled=bool(row["cancelled"]),
        updated_at=row["updated_at"],
    )
