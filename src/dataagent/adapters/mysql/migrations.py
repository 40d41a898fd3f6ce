"""Additive migrations, run at start-up under the schema lock: columns a newer version added to existing tables.

Each is an instant `ALTER TABLE ... ADD COLUMN` on InnoDB (a column with a default, at the end; with an index,
built online) and a backfill from the data already there (if any is needed), so a database created by an older
version keeps everything and gains the column.
A table created by this version has the column already (tables.py) and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text


@dataclass(frozen=True, slots=True)
class AddedColumn:
    table: str
    column: str
    add: str
    backfill: str = ""  # nothing to backfill: the column's default is right for every existing row


ADDED_COLUMNS = (
    AddedColumn(
        "sessions", "stored_bytes",
        "ALTER TABLE sessions ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0",
        # domain.models.stored_size: content and compact JSON metadata in bytes (no metadata counts 0)
        "UPDATE sessions s SET stored_bytes = (SELECT COALESCE(SUM(LENGTH(m.content) "
        "+ COALESCE(LENGTH(NULLIF(m.metadata, '{}')), 0)), 0) FROM messages m WHERE m.session_id = s.session_id)",
    ),
    AddedColumn(  # existing sessions were all created by a key for itself: NULL, no end user
        "sessions", "end_user",
        "ALTER TABLE sessions ADD COLUMN end_user VARCHAR(128) NULL, "
        "ADD INDEX ix_sessions_user_id_end_user_last_active_session_id (user_id, end_user, last_active, session_id)",
    ),
)


def migrate(sync_conn: Connection) -> list[str]:
    """Add the missing columns to the tables that exist; the `table.column`s added."""
    inspector = inspect(sync_conn)
    present = set(inspector.get_table_names())
    added: list[str] = []
    for step in ADDED_COLUMNS:
        if step.table in present and step.column not in {c["name"] for c in inspector.get_columns(step.table)}:
            sync_conn.execute(text(step.add))
            if step.backfill:
                sync_conn.execute(text(step.backfill))
            added.append(f"{step.table}.{step.column}")
    return added
