"""Start-up: create the tables if missing (one worker at a time), check them, read the server's limits."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dataagent.adapters.mysql.migrations import migrate
from dataagent.adapters.mysql.tables import TABLES, metadata
from dataagent.domain.errors import StoreUnavailableError

SCHEMA_LOCK_WAIT_S = 30

log = logging.getLogger("dataagent.mysql")


class SchemaMismatchError(StoreUnavailableError):
    """A table exists with columns this version does not know how to use: it needs a migration."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    version: str
    max_allowed_packet: int


def schema_lock_name(database: str) -> str:
    """A server-wide GET_LOCK name for this database's schema (lock names are at most 64 characters)."""
    return "dataagent_schema:" + hashlib.sha1(database.encode()).hexdigest()[:32]


async def ensure_schema(conn: AsyncConnection) -> ServerInfo:
    """Create the missing tables under a named lock, so that workers starting together do not race."""
    database = (await conn.execute(text("SELECT DATABASE()"))).scalar_one()
    lock = schema_lock_name(str(database))
    got = (await conn.execute(text("SELECT GET_LOCK(:name, :wait)"), {"name": lock, "wait": SCHEMA_LOCK_WAIT_S})
           ).scalar_one()
    if got != 1:
        raise StoreUnavailableError(f"could not get the schema lock of database {database!r} in time")
    try:
        await conn.run_sync(_create_and_check)
    finally:
        await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock})
    row = (await conn.execute(text("SELECT VERSION(), @@max_allowed_packet"))).one()
    return ServerInfo(str(row[0]), int(row[1]))


def _create_and_check(sync_conn: Connection) -> None:
    added = migrate(sync_conn)
    if added:
        log.warning("the session store's schema was migrated: added %s", ", ".join(added))
    _check_columns(sync_conn, only_present=True)  # before a new table's foreign key meets an old table
    metadata.create_all(sync_conn, checkfirst=True)
    _check_columns(sync_conn)


def _check_columns(sync_conn: Connection, only_present: bool = False) -> None:
    inspector = inspect(sync_conn)
    present_tables = set(inspector.get_table_names())
    for table in TABLES:
        if only_present and table.name not in present_tables:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = sorted(set(table.columns.keys()) - present)
        if missing:
            raise SchemaMismatchError(
                f"table {table.name!r} lacks columns {missing}: migrate the database (docs/STORAGE.md)"
            )
