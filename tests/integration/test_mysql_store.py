"""What only the MySQL store has: its schema, start-up, limits and answers lost on the wire (real MariaDB)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from dataagent.adapters.mysql.repositories import MySqlSessionRepository
from dataagent.adapters.mysql.schema import SchemaMismatchError
from dataagent.adapters.mysql.tables import metadata
from dataagent.domain.approvals import Decision, DecisionType
from dataagent.domain.errors import PayloadTooLargeError, StoreUnavailableError
from dataagent.domain.models import MessagePageQuery, Role, RunState
from dataagent.entrypoints.container import Container, build_mysql_engine
from dataagent.entrypoints.lifecycle import build_lifecycle
from tests.contract.helpers import approval, at, new_message, new_session
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, admin, admin_query, database_url, fresh_database
from tests.support.polling import eventually
from tests.support.servers import make_settings
from tests.tcp_proxy import COMMIT, TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.mysql]


async def inserts_running(database: str) -> int:
    """INSERTs into `sessions` on `database` still executing (waiting for a lock, when another holds it)."""
    [(count,)] = await admin_query(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND COMMAND = 'Query' "
        "AND INFO LIKE 'INSERT INTO sessions%%'", (database,))
    return int(count)


def columns_of(rows: list[tuple[object, ...]]) -> dict[str, str]:
    return {str(name): str(kind).lower() for name, kind in rows}


async def test_start_creates_innodb_utf8mb4_tables_with_the_documented_columns_and_indexes() -> None:
    async with fresh_database() as db:
        repo = MySqlSessionRepository.from_url(database_url(db))
        await repo.start()
        await repo.close()
        tables = await admin_query(
            "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (db,)
        )
        assert {(t, e, c) for t, e, c in tables} == {
            (name, "InnoDB", "utf8mb4_bin") for name in metadata.tables
        }
        assert {"sessions", "messages", "interrupts", "request_keys", "queued_runs"} <= set(metadata.tables)
        messages = columns_of(await admin_query(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA=%s "
            "AND TABLE_NAME='messages'", (db,)))
        assert messages["content"] == "longtext" and messages["created_at"] == "datetime(6)"
        assert messages["role"] == "enum('user','assistant','tool')"
        indexes = await admin_query(
            "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA=%s GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE",
            (db,))
        found = {(t, cols, unique == 0) for t, _, unique, cols in indexes}
        assert ("messages", "session_id,position", True) in found
        assert ("sessions", "user_id,last_active,session_id", False) in found
        assert ("sessions", "last_active", False) in found
        assert ("sql_audit", "created_at,audit_id", False) in found  # the trail's order and its retention sweep
        rules = await admin_query(
            "SELECT TABLE_NAME, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA=%s", (db,))
        # the audit trail has no foreign key: its records outlive the session's deletion
        assert sorted(rules) == [("feedback", "CASCADE"), ("interrupts", "CASCADE"), ("messages", "CASCADE"),
                                ("queued_runs", "CASCADE")]


async def test_workers_starting_together_create_the_schema_once_without_errors() -> None:
    async with fresh_database() as db:
        repos = [MySqlSessionRepository.from_url(database_url(db)) for _ in range(6)]
        await asyncio.gather(*(r.start() for r in repos))
        await asyncio.gather(*(r.close() for r in repos))
        assert len(await admin_query(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s", (db,))) == len(metadata.tables)


async def test_an_old_table_without_our_columns_stops_start_up_with_a_migration_hint() -> None:
    async with fresh_database() as db:
        await admin_query(f"CREATE TABLE `{db}`.messages (id INT PRIMARY KEY, session_id VARCHAR(64), "
                          "role ENUM('user','assistant'), content TEXT, created_at TIMESTAMP)")
        repo = MySqlSessionRepository.from_url(database_url(db))
        with pytest.raises(SchemaMismatchError) as caught:
            await repo.start()
        await repo.close()
        assert "'messages'" in caught.value.message and "position" in caught.value.message
        assert "docs/STORAGE.md" in caught.value.message


async def test_an_unreachable_server_or_database_is_store_unavailable_naming_where() -> None:
    async with fresh_database() as db:
        missing = MySqlSessionRepository.from_url(database_url(db + "_missing"), where=f"{MYSQL_HOST}:{MYSQL_PORT}")
        with pytest.raises(StoreUnavailableError, match=f"{MYSQL_HOST}:{MYSQL_PORT}.*Unknown database"):
            await missing.start()
        await missing.close()
        async with TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
            proxy.cut()
            down = MySqlSessionRepository.from_url(database_url(db, port=proxy.port), where=f"127.0.0.1:{proxy.port}")
            with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{proxy.port}"):
                await down.start()
            with pytest.raises(StoreUnavailableError):
                await down.ping()
            await down.close()


async def test_the_store_runs_on_the_engine_the_container_built_and_the_lifecycle_disposes_it() -> None:
    async with fresh_database() as db:
        container = Container(settings=make_settings(session_store="mysql", mysql_url=database_url(db)))
        async with build_lifecycle(container):
            engine = container.mysql_engine()
            assert container.repository().engine is engine
            assert engine.pool.checkedin() >= 1  # the schema was ensured through it
        assert engine.pool.checkedin() == 0


async def test_a_password_with_any_characters_works_from_the_separate_settings() -> None:
    user, password = f"da_t_{secrets.token_hex(4)}", "p@ss:w/rd%?#&=+ 中文 é \"'\\ ;"
    async with fresh_database() as db:
        async with admin() as cursor:
            for host in ("%", "localhost"):
                await cursor.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
                await cursor.execute(f"GRANT ALL ON `{db}`.* TO %s@%s", (user, host))
        try:
            settings = make_settings(session_store="mysql", mysql_host=MYSQL_HOST, mysql_port=MYSQL_PORT,
                                     mysql_user=user, mysql_password=password, mysql_database=db)
            engine = build_mysql_engine(settings)
            repo = MySqlSessionRepository(engine)
            await repo.start()
            created, _ = await repo.get_or_create_session(new_session("s1"))
            assert (await repo.get_session("s1")) == created
            await repo.close()
            await engine.dispose()
        finally:
            async with admin() as cursor:
                for host in ("%", "localhost"):
                    await cursor.execute("DROP USER IF EXISTS %s@%s", (user, host))


async def test_a_message_larger_than_max_allowed_packet_is_refused_before_sending() -> None:
    async with fresh_database() as db:
        repo = MySqlSessionRepository.from_url(database_url(db))
        await repo.start()
        assert repo.server is not None
        await repo.get_or_create_session(new_session("s1"))
        too_big = "x" * (repo.server.max_allowed_packet + 1)
        with pytest.raises(PayloadTooLargeError, match="max_allowed_packet"):
            await repo.append_message(new_message("s1", "huge", too_big))
        stored = await repo.append_message(new_message("s1", "small"))
        assert stored.position == 0
        await repo.close()


async def test_a_creation_racing_an_uncommitted_insert_waits_and_returns_the_winner() -> None:
    async with fresh_database() as db:
        repo = MySqlSessionRepository.from_url(database_url(db))
        await repo.start()
        async with admin() as cursor:
            await cursor.execute("START TRANSACTION")
            await cursor.execute(
                f"INSERT INTO `{db}`.sessions (session_id, user_id, title, created_at, last_active, message_count) "
                "VALUES ('race', 'first', 't', NOW(6), NOW(6), 0)")
            racing = asyncio.create_task(repo.get_or_create_session(new_session("race", "second")))
            await eventually(lambda: inserts_running(db), what="the creation waiting on the first insert's key lock")
            assert not racing.done()
            await cursor.execute("COMMIT")
            session, created = await racing
        assert not created and session.user_id == "first"
        await repo.close()


async def test_an_append_broken_between_its_statements_is_rolled_back_and_stored_once_on_retry() -> None:
    """The connection breaks after the INSERT reached the server but before COMMIT: the count taken by the
    UPDATE is rolled back with it, and the retry stores the message once at the next position."""
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        repo = MySqlSessionRepository.from_url(database_url(db, port=proxy.port))
        await repo.start()
        await repo.get_or_create_session(new_session("s1"))
        await repo.append_message(new_message("s1", "m0"))
        proxy.lose_reply_after(b"\x03INSERT INTO messages")
        stored = await repo.append_message(new_message("s1", "m1", "half-sent"), RunState("run_1"))
        assert proxy.replies_lost == 1 and stored.position == 1
        page = await repo.list_messages("s1", MessagePageQuery())
        assert [(m.message_id, m.position, m.content) for m in page.messages] == [
            ("m0", 0, "content of m0"), ("m1", 1, "half-sent")]
        session = await repo.get_session("s1")
        assert session is not None and session.message_count == 2 and session.active_run_id == "run_1"
        await repo.close()


async def test_an_append_whose_commit_answer_is_lost_is_stored_exactly_once() -> None:
    async with fresh_database() as db, TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        repo = MySqlSessionRepository.from_url(database_url(db, port=proxy.port))
        await repo.start()
        await repo.get_or_create_session(new_session("s1"))
        await repo.append_message(new_message("s1", "m0"))
        proxy.lose_reply_after(COMMIT)
        stored = await repo.append_message(new_message("s1", "m1", "the once-only answer", role=Role.ASSISTANT))
        assert proxy.replies_lost == 1 and stored.position == 1
        page = await repo.list_messages("s1", MessagePageQuery())
        assert [(m.message_id, m.position) for m in page.messages] == [("m0", 0), ("m1", 1)] and page.total == 2

        await repo.save_interrupt(approval("s1", "int_1"))
        proxy.lose_reply_after(COMMIT)
        approve = Decision(DecisionType.APPROVE)
        assert await repo.resolve_interrupt("s1", "int_1", approve, at(3)) is True  # it won, though unanswered
        assert proxy.replies_lost == 2
        assert await repo.resolve_interrupt("s1", "int_1", Decision(DecisionType.REJECT), at(4)) is False
        await repo.close()
