"""The MySQL store's idempotency keys and queued questions (a part of MySqlSessionRepository).

A key is claimed by INSERT: the primary key (principal, request_key) lets exactly one of concurrent claims in,
on any worker. A session's queue is changed under a lock on its sessions row, so places stay in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dataagent.adapters.mysql.engine import error_code, transaction
from dataagent.adapters.mysql.tables import queued_runs, request_keys, sessions
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.requests import QueuedRun, RequestRecord

DUPLICATE_KEY = 1062


def _key(principal: str, key: str) -> Any:
    return (request_keys.c.principal == principal) & (request_keys.c.request_key == key)


def _record(row: Any) -> RequestRecord:
    return RequestRecord(row.principal, row.request_key, row.fingerprint, row.created_at, row.expires_at,
                         row.outcome)


class RequestStore:
    """Mixed into MySqlSessionRepository, which gives it `_engine`."""

    _engine: AsyncEngine

    async def claim_request(self, record: RequestRecord) -> RequestRecord | None:
        async def work(conn: AsyncConnection, attempt: int) -> RequestRecord | None:
            where = _key(record.principal, record.key)
            # an expired record no longer holds the key
            await conn.execute(delete(request_keys).where(where, request_keys.c.expires_at <= record.created_at))
            try:
                await conn.execute(insert(request_keys).values(
                    principal=record.principal, request_key=record.key, fingerprint=record.fingerprint,
                    created_at=record.created_at, expires_at=record.expires_at, outcome=record.outcome,
                ))
            except sa_exc.IntegrityError as exc:
                if error_code(exc) != DUPLICATE_KEY:
                    raise
                held = (await conn.execute(select(request_keys).where(where))).first()
                return _record(held) if held is not None else record  # gone again at once: still not ours
            return None

        return await transaction(self._engine, work, "claim_request")

    async def get_request(self, principal: str, key: str, now: datetime) -> RequestRecord | None:
        async def work(conn: AsyncConnection, attempt: int) -> RequestRecord | None:
            row = (await conn.execute(select(request_keys).where(
                _key(principal, key), request_keys.c.expires_at > now))).first()
            return _record(row) if row is not None else None

        return await transaction(self._engine, work, "get_request")

    async def settle_request(self, principal: str, key: str, outcome: dict[str, Any]) -> None:
        async def work(conn: AsyncConnection, attempt: int) -> None:
            await conn.execute(update(request_keys).where(_key(principal, key)).values(outcome=outcome))

        await transaction(self._engine, work, "settle_request")

    async def release_request(self, principal: str, key: str) -> None:
        async def work(conn: AsyncConnection, attempt: int) -> None:
            await conn.execute(delete(request_keys).where(_key(principal, key)))

        await transaction(self._engine, work, "release_request")

    async def delete_expired_requests(self, now: datetime, limit: int) -> int:
        async def work(conn: AsyncConnection, attempt: int) -> int:
            expired = (await conn.execute(select(request_keys.c.principal, request_keys.c.request_key)
                                          .where(request_keys.c.expires_at <= now).limit(limit))).all()
            for principal, key in expired:
                await conn.execute(delete(request_keys).where(_key(principal, key), request_keys.c.expires_at <= now))
            return len(expired)

        return await transaction(self._engine, work, "delete_expired_requests")

    async def enqueue_run(self, item: QueuedRun, max_queued: int | None, front: bool = False) -> int | None:
        async def work(conn: AsyncConnection, attempt: int) -> int | None:
            locked = (await conn.execute(select(sessions.c.session_id).where(
                sessions.c.session_id == item.session_id).with_for_update())).first()
            if locked is None:
                raise SessionNotFoundError()
            row = (await conn.execute(select(
                func.count(), func.min(queued_runs.c.position), func.max(queued_runs.c.position),
            ).where(queued_runs.c.session_id == item.session_id))).one()
            count, low, high = int(row[0]), row[1], row[2]
            if max_queued is not None and count >= max_queued:
                return None
            position = (int(low) - 1 if front else int(high) + 1) if count else 0
            await conn.execute(insert(queued_runs).values(
                run_id=item.run_id, session_id=item.session_id, position=position, question=item.question,
                metadata=item.metadata, queued_at=item.queued_at,
            ))
            return 1 if front else count + 1

        return await transaction(self._engine, work, "enqueue_run")

    async def next_queued_run(self, session_id: str) -> QueuedRun | None:
        async def work(conn: AsyncConnection, attempt: int) -> QueuedRun | None:
            row = (await conn.execute(select(queued_runs).where(queued_runs.c.session_id == session_id)
                                      .order_by(queued_runs.c.position).limit(1))).first()
            if row is None:
                return None
            return QueuedRun(row.session_id, row.run_id, row.question, row.queued_at, dict(row.metadata or {}))

        return await transaction(self._engine, work, "next_queued_run")

    async def take_queued_run(self, session_id: str, run_id: str) -> bool:
        async def work(conn: AsyncConnection, attempt: int) -> bool:
            result = await conn.execute(delete(queued_runs).where(
                queued_runs.c.session_id == session_id, queued_runs.c.run_id == run_id))
            return bool(result.rowcount)

        return await transaction(self._engine, work, "take_queued_run")
