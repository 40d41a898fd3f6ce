"""A database created by the previous version (no sessions.stored_bytes) is migrated at start, data kept."""

from __future__ import annotations

import pytest

from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.domain.models import MessagePageQuery, stored_size
from tests.contract.helpers import new_message, new_session
from tests.mysqldb import admin, database_url, fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

# The tables as the previous version's create_all made them (interrupts: created at start if missing)
PREVIOUS_SCHEMA = [
    """CREATE TABLE sessions (
        session_id VARCHAR(64) NOT NULL, user_id VARCHAR(255) NOT NULL, title VARCHAR(255) NOT NULL,
        created_at DATETIME(6) NOT NULL, last_active DATETIME(6) NOT NULL, message_count INTEGER NOT NULL,
        active_run_id VARCHAR(64), pending_interrupt JSON, metadata JSON, PRIMARY KEY (session_id)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin""",
    "CREATE INDEX ix_sessions_last_active ON sessions (last_active)",
    "CREATE INDEX ix_sessions_user_id_last_active_session_id ON sessions (user_id, last_active, session_id)",
    """CREATE TABLE messages (
        message_id VARCHAR(64) NOT NULL, session_id VARCHAR(64) NOT NULL, position INTEGER NOT NULL,
        `role` ENUM('user','assistant','tool') NOT NULL, content LONGTEXT NOT NULL, created_at DATETIME(6) NOT NULL,
        run_id VARCHAR(64), status VARCHAR(32) NOT NULL, metadata JSON, PRIMARY KEY (message_id),
        CONSTRAINT uq_messages_session_id_position UNIQUE (session_id, position),
        CONSTRAINT fk_messages_session_id_sessions FOREIGN KEY(session_id) REFERENCES sessions (session_id)
            ON DELETE CASCADE
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin""",
    "INSERT INTO sessions VALUES ('old-1', 'alice', 't', '2026-01-01', '2026-01-01', 2, NULL, NULL, '{}'),"
    " ('old-2', 'alice', 't', '2026-01-01', '2026-01-01', 0, NULL, NULL, NULL)",
    "INSERT INTO messages VALUES ('m1', 'old-1', 0, 'user', '你好 🌏', '2026-01-01', 'r1', 'completed', '{}'),"
    " ('m2', 'old-1', 1, 'assistant', 'answer', '2026-01-01', 'r1', 'completed', '{\"tool_calls\":[]}')",
]


async def test_a_database_of_the_previous_version_gains_stored_bytes_from_its_messages_and_keeps_them() -> None:
    async with fresh_database() as db:
        async with admin() as cursor:  # autocommit
            await cursor.execute(f"USE `{db}`")
            for statement in PREVIOUS_SCHEMA:
                await cursor.execute(statement)
        repo = MySqlSessionRepository.from_url(database_url(db), where=db)
        try:
            await repo.start()
            old, empty = await repo.get_session("old-1"), await repo.get_session("old-2")
            assert old is not None and empty is not None and empty.stored_bytes == 0
            assert old.stored_bytes == stored_size("你好 🌏", {}) + stored_size("answer", {"tool_calls": []})
            page = await repo.list_messages("old-1", MessagePageQuery(limit=10))
            assert [(m.message_id, m.content) for m in page.messages] == [("m1", "你好 🌏"), ("m2", "answer")]
            added = new_message("old-1", "m3", "more")
            await repo.append_message(added)
            after = await repo.get_session("old-1")
            assert after is not None and after.stored_bytes == old.stored_bytes + 4 and after.message_count == 3
        finally:
            await repo.close()
        again = MySqlSessionRepository.from_url(database_url(db), where=db)  # a second start leaves it as it is
        try:
            await again.start()
            assert (s := await again.get_session("old-1")) is not None and s.stored_bytes == old.stored_bytes + 4
        finally:
            await again.close()


# The sessions table as the version before end users made it (stored_bytes, no end_user)
BEFORE_END_USERS = [
    """CREATE TABLE sessions (
        session_id VARCHAR(64) NOT NULL, user_id VARCHAR(255) NOT NULL, title VARCHAR(255) NOT NULL,
        created_at DATETIME(6) NOT NULL, last_active DATETIME(6) NOT NULL, message_count INTEGER NOT NULL,
        stored_bytes BIGINT NOT NULL DEFAULT 0, active_run_id VARCHAR(64), pending_interrupt JSON, metadata JSON,
        PRIMARY KEY (session_id)
    ) ENGINE=InnoDB CHARSET=utf8mb4 COLLATE utf8mb4_bin""",
    "CREATE INDEX ix_sessions_last_active ON sessions (last_active)",
    "CREATE INDEX ix_sessions_user_id_last_active_session_id ON sessions (user_id, last_active, session_id)",
    "INSERT INTO sessions VALUES ('kept', 'backend', 't', '2026-01-01', '2026-01-01', 0, 7, NULL, NULL, '{}')",
]


async def test_a_database_from_before_end_users_gains_the_column_and_its_index_and_keeps_its_sessions() -> None:
    async with fresh_database() as db:
        async with admin() as cursor:
            await cursor.execute(f"USE `{db}`")
            for statement in BEFORE_END_USERS:
                await cursor.execute(statement)
        repo = MySqlSessionRepository.from_url(database_url(db), where=db)
        try:
            await repo.start()
            kept = await repo.get_session("kept")
            assert kept is not None and kept.end_user is None and kept.stored_bytes == 7
            await repo.get_or_create_session(new_session("new", "backend", end_user="alice"))
            assert [s.session_id for s in (await repo.list_sessions("backend", 10, 0, "alice"))[0]] == ["new"]
            assert (await repo.list_sessions("backend", 10, 0))[1] == 2
        finally:
            await repo.close()
        async with admin() as cursor:
            await cursor.execute(f"SHOW INDEX FROM `{db}`.sessions WHERE Column_name = 'end_user'")
            indexes = [row[2] for row in await cursor.fetchall()]
        assert indexes == ["ix_sessions_user_id_end_user_last_active_session_id"]
