"""The SQL audit trail: one record per statement the agent proposes, from its analysis to its execution."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from dataagent.domain.errors import InvalidInputError
from dataagent.domain.inputs import valid_text

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class AuditDecision(StrEnum):
    """What decided the statement's fate (None on a record: still undecided)."""

    APPROVE = "approve"  # a client approved it
    EDIT = "edit"  # a client edited it (edited_sql) and so approved the edit
    REJECT = "reject"  # a client rejected it
    TIMEOUT = "timeout"  # nobody decided before DATAAGENT_HITL_TIMEOUT
    CANCEL = "cancel"  # the run ended (cancelled, deleted, shut down) while it waited for a decision
    AUTO_APPROVE = "auto_approve"  # DATAAGENT_HITL_POLICY asked no approval
    REFUSED_GUARD = "refused_guard"  # the SQL guard or the read-only screen refused it
    REFUSED_POLICY = "refused_policy"  # the data policy (DATAAGENT_DATA_POLICY) refused it
    REFUSED_ESTIMATE = "refused_estimate"  # over DATAAGENT_SQL_MAX_ESTIMATED_ROWS


class AuditOutcome(StrEnum):
    """Where the statement ended (or `pending` / `running` while it progresses)."""

    PENDING = "pending"  # proposed, no decision yet
    RUNNING = "running"  # approved, executing
    RAN = "ran"
    FAILED = "failed"  # the database (or the step) failed it
    CANCELLED = "cancelled"  # the run was cancelled while it waited or ran
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    REFUSED = "refused"


SERVER = "server"  # `decided_by` of every decision that is not a client's


def sql_hash(sql: str) -> str:
    """SHA-256 of the statement's UTF-8 text, hex (a lone surrogate, which a stored record never holds, as its
    backslash escape)."""
    return hashlib.sha256(sql.encode("utf-8", "backslashreplace")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One proposed statement. `sql` is the text as proposed; `edited_sql` the text an edit put in its place;
    `executed_sql` what was sent to the database (after an edit and a data policy's rewrite)."""

    audit_id: str
    created_at: datetime
    session_id: str
    run_id: str
    principal: str | None
    sql: str
    statement_type: str
    read_only: bool
    tables: tuple[str, ...] = ()
    end_user: str | None = None
    sql_hash: str = ""
    outcome: AuditOutcome = AuditOutcome.PENDING
    decision: AuditDecision | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    edited_sql: str | None = None
    reason: str | None = None
    executed_sql: str | None = None
    duration_ms: float | None = None
    rows: int | None = None
    error: str | None = None
    cancelled: bool = False
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.sql_hash:
            object.__setattr__(self, "sql_hash", sql_hash(self.sql))

    def decided(
        self, decision: AuditDecision, by: str | None, at: datetime, *, outcome: AuditOutcome,
        reason: str | None = None, edited_sql: str | None = None,
    ) -> AuditRecord:
        return dataclasses.replace(self, decision=decision, decided_by=by, decided_at=at, outcome=outcome,
                                   reason=reason, edited_sql=edited_sql, updated_at=at)

    def running(self, executed_sql: str, at: datetime) -> AuditRecord:
        return dataclasses.replace(self, outcome=AuditOutcome.RUNNING, executed_sql=executed_sql, updated_at=at)

    def executed(
        self, at: datetime, duration_ms: float, rows: int | None = None, error: str | None = None,
    ) -> AuditRecord:
        outcome = AuditOutcome.RAN if error is None else AuditOutcome.FAILED
        return dataclasses.replace(self, outcome=outcome, duration_ms=round(duration_ms, 3), rows=rows,
                                   error=error, updated_at=at)

    def ended_by_cancel(self, at: datetime, duration_ms: float | None = None) -> AuditRecord:
        """Cancelled while it waited for a decision (decision `cancel`) or while it ran."""
        changes: dict[str, object] = {"outcome": AuditOutcome.CANCELLED, "cancelled": True, "updated_at": at}
        if self.decision is None:
            changes.update(decision=AuditDecision.CANCEL, decided_by=SERVER, decided_at=at)
        if duration_ms is not None:
            changes["duration_ms"] = round(duration_ms, 3)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def interrupted(self, at: datetime, reason: str) -> AuditRecord:
        """The process that ran the statement ended before it did (a kill, a lost worker): failed, `reason`."""
        return dataclasses.replace(self, outcome=AuditOutcome.FAILED, error=f"{reason}: the server process running "
                                   "the statement ended before it did", updated_at=at)

    @property
    def is_open(self) -> bool:
        return self.outcome in (AuditOutcome.PENDING, AuditOutcome.RUNNING)

    def valid(self) -> AuditRecord:
        """The record with every text valid Unicode (a lone surrogate as U+FFFD), as every store can hold it."""
        texts = ("sql", "statement_type", "edited_sql", "reason", "executed_sql", "error", "principal",
                 "end_user", "decided_by")
        changes: dict[str, object] = {
            name: valid_text(value) for name in texts if isinstance(value := getattr(self, name), str)}
        changes["tables"] = tuple(valid_text(t) for t in self.tables)
        changes["sql_hash"] = sql_hash(str(changes["sql"]))  # of the text as stored
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at, self.audit_id)


def encode_cursor(created_at: datetime, audit_id: str) -> str:
    """An opaque position in the trail's order (created_at, audit_id): microseconds since 1970, `_`, the id."""
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}_{audit_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    micros, sep, audit_id = cursor.partition("_")
    if not (sep and micros.isdigit() and audit_id and len(micros) <= 17):
        raise InvalidInputError("'after' is not a cursor of the audit trail", details={"after": cursor[:100]})
    return _EPOCH + timedelta(microseconds=int(micros)), audit_id


def _utc(value: datetime) -> datetime:
    """The time in UTC; past the calendar's ends (year 1 at +14:00), the end itself."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC) if value.year == 1 else datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A page of the trail, oldest first: records created in [since, until), after the cursor, filtered."""

    limit: int = 100
    after: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    session_id: str | None = None
    principal: str | None = None
    outcome: AuditOutcome | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise InvalidInputError("limit must be >= 1")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise InvalidInputError(f"'{name}' needs a time zone (e.g. 2026-01-31T00:00:00Z)")
            if value is not None:
                object.__setattr__(self, name, _utc(value))
        if self.after is not None:
            decode_cursor(self.after)

    @property
    def position(self) -> tuple[datetime, str] | None:
        return decode_cursor(self.after) if self.after is not None else None

    def matches(self, record: AuditRecord) -> bool:
        """Whether the record passes the filters and lies after the cursor (the memory store's reading)."""
        position = self.position
        return (
            (position is None or (record.created_at, record.audit_id) > position)
            and (self.since is None or record.created_at >= self.since)
            and (self.until is None or record.created_at < self.until)
            and (self.session_id is None or record.session_id == self.session_id)
            and (self.principal is None or record.principal == self.principal)
            and (self.outcome is None or record.outcome == self.outcome)
        )


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: list[AuditRecord]
    has_more: bool

    @property
    def next_cursor(self) -> str | None:
        return self.records[-1].cursor if self.has_more and self.records else None
