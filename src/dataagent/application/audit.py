"""The SQL audit trail's port and use cases: record each proposed statement as it progresses, read, expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from dataagent.application.ports import Clock, IdGenerator
from dataagent.domain.audit import AuditOutcome, AuditPage, AuditQuery, AuditRecord

PURGE_BATCH = 1000


class AuditLog(Protocol):
    """Where audit records are kept, apart from the sessions (they outlive a session's deletion)."""

    async def save(self, record: AuditRecord) -> None:
        """Store the record, or replace the stored one with its audit_id (one record per statement)."""
        ...

    async def get(self, audit_id: str) -> AuditRecord | None:
        """The record, or None."""
        ...

    async def find(self, query: AuditQuery) -> AuditPage:
        """The records the query selects, oldest first (by created_at, then audit_id), at most `limit`."""
        ...

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Delete up to `limit` records created before `cutoff`; how many went."""
        ...


class AuditTrail:
    """What the SQL step calls: a new record per proposed statement, then its changes saved in place."""

    def __init__(self, log: AuditLog, clock: Clock, ids: IdGenerator) -> None:
        self.log = log
        self.clock = clock
        self._ids = ids

    def new(
        self, session_id: str, run_id: str, principal: str | None, sql: str, statement_type: str,
        read_only: bool, tables: tuple[str, ...], end_user: str | None = None,
    ) -> AuditRecord:
        """The record of a statement proposed now (pending, not saved yet)."""
        now = self.clock.now()
        return AuditRecord(
            self._ids.new_id("aud"), now, session_id, run_id, principal, sql, statement_type, read_only,
            tables, end_user=end_user, updated_at=now,
        )

    def now(self) -> datetime:
        return self.clock.now()

    async def save(self, record: AuditRecord) -> AuditRecord:
        record = record.valid()
        await self.log.save(record)
        return record


class AuditService:
    """GET /api/v1/audit (admin scope, checked by the route) and the retention sweep."""

    def __init__(self, log: AuditLog, clock: Clock, retention_days: float) -> None:
        self._log = log
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    async def page(self, query: AuditQuery) -> AuditPage:
        return await self._log.find(query)

    async def purge(self) -> int:
        """Delete every record older than DATAAGENT_AUDIT_RETENTION days, in batches; how many went."""
        cutoff = self._clock.now() - self._retention
        total = 0
        while (deleted := await self._log.delete_before(cutoff, PURGE_BATCH)) > 0:
            total += deleted
            if deleted < PURGE_BATCH:
                break
        return total

    async def close_open(self, reason: str, session_id: str | None = None, run_id: str | None = None) -> int:
        """Mark the open (pending or running) records as failed by `reason`: those of a run whose process died
        (the failover's `worker_lost`), or, with neither id, every one (local start-up: `interrupted`)."""
        now, closed = self._clock.now(), 0
        for outcome in (AuditOutcome.PENDING, AuditOutcome.RUNNING):
            after: str | None = None
            while True:
                page = await self._log.find(AuditQuery(limit=PURGE_BATCH, after=after, session_id=session_id,
                                                       outcome=outcome, until=now))
                for record in page.records:
                    if run_id is None or record.run_id == run_id:
                        await self._log.save(record.interrupted(now, reason))
                        closed += 1
                if not page.has_more:
                    break
                after = page.next_cursor
        return closed
