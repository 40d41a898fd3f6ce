"""The in-memory audit log: the newest `max_records` records of this process (the oldest go first)."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from dataagent.application.audit import AuditLog
from dataagent.domain.audit import AuditPage, AuditQuery, AuditRecord

DEFAULT_MAX_RECORDS = 10_000


class InMemoryAuditLog(AuditLog):
    """Bounded: past `max_records` the record created first is forgotten (DATAAGENT_AUDIT_MAX_MEMORY_RECORDS)."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS) -> None:
        self._max = max(1, max_records)
        self._records: OrderedDict[str, AuditRecord] = OrderedDict()

    async def save(self, record: AuditRecord) -> None:
        if record.audit_id not in self._records and len(self._records) >= self._max:
            self._records.popitem(last=False)
        self._records[record.audit_id] = record

    async def get(self, audit_id: str) -> AuditRecord | None:
        return self._records.get(audit_id)

    async def find(self, query: AuditQuery) -> AuditPage:
        found = sorted((r for r in self._records.values() if query.matches(r)),
                       key=lambda r: (r.created_at, r.audit_id))
        return AuditPage(found[: query.limit], len(found) > query.limit)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        old = [r.audit_id for r in self._records.values() if r.created_at < cutoff][:limit]
        for audit_id in old:
            del self._records[audit_id]
        return len(old)
