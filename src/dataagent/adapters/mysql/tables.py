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
    Column,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.mysql import DATETIME, LONGTEXT
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

TABLES = (sessions, messages, interrupts, request_keys, queued_runs)
