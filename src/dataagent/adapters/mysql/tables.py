"""The MySQL schema: the one place that defines the tables, their columns and their indexes.

InnoDB, utf8mb4 with binary collation (ids compare exactly, as in the memory store), DATETIME(6) in UTC.
A change here needs a migration for databases created by an older version: see docs/STORAGE.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT, MEDIUMTEXT
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from dataagent.domain.models import Role

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mariadb_engine": "InnoDB",
    "mariadb_charset": "utf8mb4",
    "mariadb_collate": "utf8mb4_bin",
}
ID_LENGTH = 64  # session ids are 1..64 characters; generated ids are shorter
PRINCIPAL_LENGTH = 255
END_USER_LENGTH = 128  # domain.callers.END_USER_PATTERN

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utc_naive(value: datetime) -> datetime:
    """A time as a DATETIME(6) column holds it: naive UTC (aware times only, so none is misread)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: the store only takes timezone-aware times")
    return value.astimezone(UTC).replace(tzinfo=None)


def json_dumps(value: Any) -> str:
    """A JSON column's text (the engine's json_serializer): compact, any Unicode kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def json_text(value: Any) -> str | None:
    """A JSON column's value for a statement bound by the driver (None is SQL NULL, as none_as_null)."""
    return None if value is None else json_dumps(value)


class UtcDateTime(TypeDecorator[datetime]):
    """DATETIME(6) holding naive UTC; binds aware datetimes (converted to UTC), returns aware UTC."""

    impl = DATETIME(fsp=6)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc_naive(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _id(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    return Column(name, String(ID_LENGTH), *args, **kwargs)


sessions = Table(
    "sessions",
    metadata,
    _id("session_id", primary_key=True),
    Column("user_id", String(PRINCIPAL_LENGTH), nullable=False),
    Column("title", String(255), nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_active", UtcDateTime(), nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
    # what its messages count (domain.models.stored_size), moved by every append; added by migrations.py
    Column("stored_bytes", BigInteger, nullable=False, default=0, server_default="0"),
    _id("active_run_id", nullable=True),
    Column("pending_interrupt", JSON(none_as_null=True), nullable=True),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    # the end user of the principal it was created for (X-User-ID), NULL for the key itself; added by migrations.py
    Column("end_user", String(END_USER_LENGTH), nullable=True),
    # a principal's sessions, most recently active first (read backwards)
    Index(None, "user_id", "last_active", "session_id"),
    # one end user's sessions, most recently active first
    Index(None, "user_id", "end_user", "last_active", "session_id"),
    # expiry: the oldest idle sessions first
    Index(None, "last_active"),
    **TABLE_OPTIONS,
)

messages = Table(
    "messages",
    metadata,
    _id("message_id", primary_key=True),
    _id("session_id", ForeignKey(sessions.c.session_id, ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column(
        "role",
        Enum(Role, values_callable=lambda roles: [r.value for r in roles], native_enum=True,
             create_constraint=False, length=16, name="message_role"),
        nullable=False,
    ),
    Column("content", LONGTEXT(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    _id("run_id", nullable=True),
    Column("status", String(32), nullable=False),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    # the session's own order: paging by offset and by cursor; one message per position
    UniqueConstraint("session_id", "position"),
    **TABLE_OPTIONS,
)

interrupts = Table(
    "interrupts",
    metadata,
    _id("interrupt_id", primary_key=True),
    _id("session_id", ForeignKey(sessions.c.session_id, ondelete="CASCADE"), nullable=False),
    _id("run_id", nullable=False),
    Column("request", JSON(none_as_null=True), nullable=False),
    Column("decision", JSON(none_as_null=True), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False, server_default=text("CURRENT_TIMESTAMP(6)")),
    Column("decided_at", UtcDateTime(), nullable=True),
    Index(None, "session_id"),
    **TABLE_OPTIONS,
)

# idempotency keys (application/idempotency.py): one row per principal and key, kept until it expires
request_keys = Table(
    "request_keys",
    metadata,
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    Column("request_key", String(128), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("outcome", JSON(none_as_null=True), nullable=True),
    Index(None, "expires_at"),
    **TABLE_OPTIONS,
)

# questions queued behind a session's running answer (multitask_strategy=enqueue), head first by position
queued_runs = Table(
    "queued_runs",
    metadata,
    _id("run_id", primary_key=True),
    _id("session_id", ForeignKey(sessions.c.session_id, ondelete="CASCADE"), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("question", LONGTEXT(), nullable=False),
    Column("metadata", JSON(none_as_null=True), nullable=True),
    Column("queued_at", UtcDateTime(), nullable=False),
    UniqueConstraint("session_id", "position"),
    **TABLE_OPTIONS,
)

# the SQL audit trail (adapters/mysql/audit.py): one row per proposed statement, no foreign key to its session,
# which it outlives; deleted by the retention sweep (DATAAGENT_AUDIT_RETENTION), oldest first
sql_audit = Table(
    "sql_audit",
    metadata,
    _id("audit_id", primary_key=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=True),
    _id("session_id", nullable=False),
    _id("run_id", nullable=False),
    Column("principal", String(PRINCIPAL_LENGTH), nullable=True),
    Column("end_user", String(PRINCIPAL_LENGTH), nullable=True),
    Column("statement_hash", String(64), nullable=False),
    Column("statement", LONGTEXT(), nullable=False),
    Column("statement_type", String(64), nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("table_names", JSON(none_as_null=True), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("decision", String(32), nullable=True),
    Column("decided_by", String(PRINCIPAL_LENGTH), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("edited_statement", LONGTEXT(), nullable=True),
    Column("executed_statement", LONGTEXT(), nullable=True),
    Column("reason", LONGTEXT(), nullable=True),
    Column("duration_ms", Float(53), nullable=True),
    Column("row_count", BigInteger, nullable=True),
    Column("error", LONGTEXT(), nullable=True),
    Column("cancelled", Boolean, nullable=False, default=False),
    # the trail's order (pages, and the retention sweep from the oldest), and the filters with it
    Index(None, "created_at", "audit_id"),
    Index(None, "session_id", "created_at"),
    Index(None, "principal", "created_at"),
    Index(None, "outcome", "created_at"),
    **TABLE_OPTIONS,
)

# feedback on answers (application/feedback.py): one row per message and principal, gone with its message
feedback = Table(
    "feedback",
    metadata,
    _id("message_id", ForeignKey(messages.c.message_id, ondelete="CASCADE"), primary_key=True),
    Column("principal", String(PRINCIPAL_LENGTH), primary_key=True),
    _id("session_id", nullable=False),
    Column("rating", String(8), nullable=False),
    Column("comment", Text(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index(None, "rating", "updated_at"),  # an admin's list: most recently changed first, by rating
    Index(None, "updated_at"),
    **TABLE_OPTIONS,
)

# verified queries (application/verified.py): not tied to a session, they outlive the answer they came from
verified_queries = Table(
    "verified_queries",
    metadata,
    _id("query_id", primary_key=True),
    Column("question", Text(), nullable=False),
    Column("query_sql", MEDIUMTEXT(), nullable=False),
    Column("created_by", String(PRINCIPAL_LENGTH), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    _id("source_message_id", nullable=True),
    Index(None, "created_at", "query_id"),  # listing, oldest first
    **TABLE_OPTIONS,
)

# a counter per named set, moved in the same transaction as every change of the set (verified queries), so
# every worker sees a change at its next read of one row
revisions = Table(
    "revisions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    **TABLE_OPTIONS,
)

TABLES = (sessions, messages, interrupts, request_keys, queued_runs, sql_audit, feedback, verified_queries, revisions)
