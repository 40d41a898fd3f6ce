"""The MySQL session store: durable sessions, messages and approvals shared by every worker and host.

Each method is one transaction (engine.transaction), so each is atomic on its own, as the port requires;
appends are group-committed (appends.py): those waiting together share a transaction, each still whole or
absent. Appends to a session are serialized by a lock on its sessions row, which makes positions gap-free.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import URL, delete, func, insert, literal, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dataagent.adapters.mysql import rows
from dataagent.adapters.mysql.appends import Appender
from dataagent.adapters.mysql.engine import (
    EngineOptions,
    build_engine,
    describe,
    error_code,
    is_store_failure,
    transaction,
)
from dataagent.adapters.mysql.requests import RequestStore
from dataagent.adapters.mysql.schema import ServerInfo, ensure_schema
from dataagent.adapters.mysql.tables import UtcDateTime, interrupts, messages, sessions
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.approvals import Decision, InterruptRecord
from dataagent.domain.errors import (
    PayloadTooLargeError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from dataagent.domain.models import Message, MessagePage, MessagePageQuery, RunState, Session, stored_size

DUPLICATE_KEY = 1062
NO_REFERENCED_ROW = 1452


def _at(value: datetime) -> Any:
    """A datetime bound with the column type (naive UTC on the wire), for use inside SQL expressions."""
    return literal(value, UtcDateTime())


def _touch(at: datetime) -> Any:
    """last_active moves forward only (GREATEST), as in the memory store's max()."""
    return func.greatest(sessions.c.last_active, _at(at))


class MySqlSessionRepository(RequestStore):
    """On an engine it is given (entrypoints/container.py builds it, and disposes it after `close`)."""

    def __init__(self, engine: AsyncEngine, *, where: str = "MySQL", telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._engine = engine
        self._appender = Appender(engine, telemetry)
        self._where = where
        self._owns_engine = False
        self.server: ServerInfo | None = None

    @classmethod
    def from_url(
        cls, url: str | URL, options: EngineOptions | None = None, *, where: str = "MySQL"
    ) -> MySqlSessionRepository:
        """On an engine of its own for `url`, which `close` disposes (for scripts, tests and library users)."""
        repository = cls(build_engine(url, options or EngineOptions()), where=where)
        repository._owns_engine = True
        return repository

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def start(self) -> None:
        try:
            async with self._engine.begin() as conn:
                self.server = await ensure_schema(conn)
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise StoreUnavailableError(f"cannot use MySQL at {self._where}: {describe(exc)}") from exc

    # -- sessions ---------------------------------------------------------------------------------

    async def get_or_create_session(self, session: Session) -> tuple[Session, bool]:
        async def work(conn: AsyncConnection, attempt: int) -> tuple[Session, bool]:
            stored = await rows.read_session(conn, session.session_id)
            if stored is not None:
                return stored, False
            try:
                await conn.execute(insert(sessions).values(rows.session_values(session)))
            except sa_exc.IntegrityError as exc:
                if error_code(exc) != DUPLICATE_KEY:
                    raise
                stored = await rows.read_session(conn, session.session_id)  # another worker created it first
                if stored is None:  # ... and it is already gone again (expired or deleted)
                    raise StoreUnavailableError("The session changed while it was created; try again") from exc
                return stored, False
            return rows.copy_session(session), True

        return await transaction(self._engine, work, "get_or_create_session")

    async def get_session(self, session_id: str) -> Session | None:
        async def work(conn: AsyncConnection, attempt: int) -> Session | None:
            return await rows.read_session(conn, session_id)

        return await transaction(self._engine, work, "get_session")

    async def list_sessions(
        self, user_id: str, limit: int, offset: int, end_user: str | None = None
    ) -> tuple[list[Session], int]:
        whose = sessions.c.user_id == user_id
        if end_user is not None:
            whose = whose & (sessions.c.end_user == end_user)

        async def work(conn: AsyncConnection, attempt: int) -> tuple[list[Session], int]:
            page = await conn.execute(
                select(sessions).where(whose)
                .order_by(sessions.c.last_active.desc(), sessions.c.session_id.desc())
                .limit(limit).offset(offset)
            )
            return [rows.session_from(r) for r in page], await rows.count_sessions(conn, whose)

        return await transaction(self._engine, work, "list_sessions")

    async def count_sessions(self, user_id: str) -> int:
        whose = sessions.c.user_id == user_id
        return await transaction(self._engine, lambda conn, _: rows.count_sessions(conn, whose), "count_sessions")

    async def set_run_state(
        self,
        session_id: str,
        *,
        active_run_id: str | None,
        pending_interrupt: dict[str, Any] | None,
        touched_at: datetime | None = None,
    ) -> None:
        values: dict[str, Any] = {"active_run_id": active_run_id, "pending_interrupt": pending_interrupt}
        if touched_at is not None:
            values["last_active"] = _touch(touched_at)

        async def work(conn: AsyncConnection, attempt: int) -> None:
            await conn.execute(update(sessions).where(sessions.c.session_id == session_id).values(values))

        await transaction(self._engine, work, "set_run_state")

    async def list_active_runs(self) -> list[tuple[str, str]]:
        async def work(conn: AsyncConnection, attempt: int) -> list[tuple[str, str]]:
            found = await conn.execute(
                select(sessions.c.session_id, sessions.c.active_run_id).where(sessions.c.active_run_id.is_not(None))
            )
            return [(str(sid), str(run_id)) for sid, run_id in found]

        return await transaction(self._engine, work, "list_active_runs")

    async def clear_run_states(self) -> int:
        async def work(conn: AsyncConnection, attempt: int) -> int:
            result = await conn.execute(
                update(sessions)
                .where(or_(sessions.c.active_run_id.is_not(None), sessions.c.pending_interrupt.is_not(None)))
                .values(active_run_id=None, pending_interrupt=None)
            )
            return int(result.rowcount)

        return await transaction(self._engine, work, "clear_run_states")

    async def delete_session(self, session_id: str) -> bool:
        async def work(conn: AsyncConnection, attempt: int) -> bool:
            result = await conn.execute(delete(sessions).where(sessions.c.session_id == session_id))
            return bool(result.rowcount)  # messages and approvals go with it (ON DELETE CASCADE)

        return await transaction(self._engine, work, "delete_session")

    async def delete_idle_sessions(self, idle_before: datetime, limit: int) -> list[str]:
        async def work(conn: AsyncConnection, attempt: int) -> list[str]:
            # SKIP LOCKED: workers sweeping at the same time take disjoint batches and never wait
            idle = list((await conn.execute(
                select(sessions.c.session_id)
                .where(sessions.c.last_active < _at(idle_before), sessions.c.active_run_id.is_(None))
                .order_by(sessions.c.last_active).limit(limit)
                .with_for_update(skip_locked=True)
            )).scalars())
            if idle:
                await conn.execute(delete(sessions).where(sessions.c.session_id.in_(idle)))
            return idle

        return await transaction(self._engine, work, "delete_idle_sessions")

    # -- messages ---------------------------------------------------------------------------------

    async def append_message(
        self, message: Message, run_state: RunState | None = None, max_session_bytes: int | None = None
    ) -> Message:
        stored = stored_size(message.content, message.metadata)
        return await self._appender.append(message, run_state, self._check_size(message), stored, max_session_bytes)

    def _check_size(self, message: Message) -> int:
        """The message's bytes on the wire; PayloadTooLargeError past the server's max_allowed_packet."""
        size = rows.wire_size(message, json.dumps(message.metadata, default=str))
        limit = self.server.max_allowed_packet if self.server else None
        if limit is not None and size > limit:
            raise PayloadTooLargeError(
                f"message too large for the session store ({size} bytes; max_allowed_packet is {limit})"
            )
        return size

    async def get_message(self, session_id: str, message_id: str) -> Message | None:
        async def work(conn: AsyncConnection, attempt: int) -> Message | None:
            return await rows.read_message(conn, session_id, message_id)

        return await transaction(self._engine, work, "get_message")

    async def list_messages(self, session_id: str, query: MessagePageQuery) -> MessagePage:
        async def work(conn: AsyncConnection, attempt: int) -> MessagePage:
            count = await conn.scalar(select(sessions.c.message_count).where(sessions.c.session_id == session_id))
            if count is None:
                raise SessionNotFoundError()
            if query.before is not None:
                end = await rows.message_position(conn, session_id, query.before)
                start = max(0, end - query.limit)
            else:
                after = query.after
                start = query.offset if after is None else await rows.message_position(conn, session_id, after) + 1
                end = start + query.limit
            page = [rows.message_from(r) for r in await conn.execute(
                select(messages).where(messages.c.session_id == session_id,
                                       messages.c.position >= start, messages.c.position < end)
                .order_by(messages.c.position)
            )]
            # positions are gap-free: a message appended since the count was read raises the total
            total = max(int(count), page[-1].position + 1 if page else 0)
            has_more = start > 0 if query.before is not None else min(end, total) < total
            return MessagePage(page, total, has_more)

        return await transaction(self._engine, work, "list_messages")

    # -- approvals --------------------------------------------------------------------------------

    async def save_interrupt(self, record: InterruptRecord) -> None:
        async def work(conn: AsyncConnection, attempt: int) -> None:
            try:
                await conn.execute(insert(interrupts).values(rows.interrupt_values(record)))
            except sa_exc.IntegrityError as exc:
                if error_code(exc) == NO_REFERENCED_ROW:
                    raise SessionNotFoundError() from exc
                if error_code(exc) != DUPLICATE_KEY:  # a duplicate: an earlier attempt stored it
                    raise

        await transaction(self._engine, work, "save_interrupt")

    async def get_interrupt(self, session_id: str, interrupt_id: str) -> InterruptRecord | None:
        async def work(conn: AsyncConnection, attempt: int) -> InterruptRecord | None:
            row = (await conn.execute(
                select(interrupts).where(interrupts.c.session_id == session_id,
                                         interrupts.c.interrupt_id == interrupt_id)
            )).first()
            return rows.interrupt_from(row) if row is not None else None

        return await transaction(self._engine, work, "get_interrupt")

    async def resolve_interrupt(
        self, session_id: str, interrupt_id: str, decision: Decision, decided_at: datetime
    ) -> bool:
        where = (interrupts.c.session_id == session_id, interrupts.c.interrupt_id == interrupt_id)

        async def work(conn: AsyncConnection, attempt: int) -> bool:
            result = await conn.execute(
                update(interrupts).where(*where, interrupts.c.decision.is_(None))
                .values(decision=decision.as_dict(), decided_at=decided_at)
            )
            if result.rowcount == 1:
                return True
            if attempt == 0:
                return False
            # an earlier attempt may have won before its connection broke: is the stored decision ours?
            row = (await conn.execute(select(interrupts.c.decision, interrupts.c.decided_at).where(*where))).first()
            return row is not None and row.decided_at == decided_at and row.decision == rows.decision_json(decision)

        return await transaction(self._engine, work, "resolve_interrupt")

    # -- health and life cycle --------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            raise StoreUnavailableError(f"The session store is unavailable ({describe(exc)})") from exc

    async def close(self) -> None:
        """Flush the appends in progress; the engine too if it is this repository's own (`from_url`)."""
        await self._appender.close()
        if self._owns_engine:
            await self._engine.dispose()
