"""Feedback and verified queries in MySQL, on the session store's engine (its tables are created with the others).

Each method is one transaction. Feedback is an upsert on (message_id, principal) and goes with its message
(ON DELETE CASCADE). Every change of the verified queries moves their row in `revisions` in the same
transaction, so each worker's index sees a change at its next read of that one row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.mysql import insert as upsert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dataagent.adapters.mysql.engine import error_code, transaction
from dataagent.adapters.mysql.tables import feedback, revisions, verified_queries
from dataagent.application.feedback import FeedbackStore
from dataagent.application.verified import VerifiedQueryStore
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.feedback import Feedback, Rating, VerifiedQuery

DUPLICATE_KEY = 1062
NO_REFERENCED_ROW = 1452
VERIFIED = "verified_queries"


def _feedback_from(row: Any) -> Feedback:
    return Feedback(row.session_id, row.message_id, row.principal, Rating(row.rating), row.comment,
                    row.created_at, row.updated_at)


def _query_from(row: Any) -> VerifiedQuery:
    return VerifiedQuery(row.query_id, row.question, row.query_sql, row.created_by, row.created_at, row.updated_at,
                         row.source_message_id)


def _query_values(query: VerifiedQuery) -> dict[str, Any]:
    return {"query_id": query.query_id, "question": query.question, "query_sql": query.sql,
            "created_by": query.created_by, "created_at": query.created_at, "updated_at": query.updated_at,
            "source_message_id": query.source_message_id}


class MySqlFeedbackStore(FeedbackStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put_feedback(self, item: Feedback) -> Feedback:
        key = (feedback.c.message_id == item.message_id, feedback.c.principal == item.principal)

        async def work(conn: AsyncConnection, attempt: int) -> Feedback:
            statement = upsert(feedback).values(
                message_id=item.message_id, principal=item.principal, session_id=item.session_id,
                rating=item.rating.value, comment=item.comment, created_at=item.created_at,
                updated_at=item.updated_at,
            )
            try:
                await conn.execute(statement.on_duplicate_key_update(
                    rating=statement.inserted.rating, comment=statement.inserted.comment,
                    updated_at=statement.inserted.updated_at,
                ))
            except sa_exc.IntegrityError as exc:
                if error_code(exc) == NO_REFERENCED_ROW:  # the message (its session) was deleted meanwhile
                    raise SessionNotFoundError() from exc
                raise
            return _feedback_from((await conn.execute(select(feedback).where(*key))).one())

        return await transaction(self._engine, work, "put_feedback")

    async def get_feedback(self, session_id: str, message_id: str, principal: str) -> Feedback | None:
        async def work(conn: AsyncConnection, attempt: int) -> Feedback | None:
            row = (await conn.execute(select(feedback).where(
                feedback.c.session_id == session_id, feedback.c.message_id == message_id,
                feedback.c.principal == principal,
            ))).first()
            return _feedback_from(row) if row is not None else None

        return await transaction(self._engine, work, "get_feedback")


    async def list_feedback(self, rating: Rating | None, limit: int, offset: int) -> tuple[list[Feedback], int]:
        where = [feedback.c.rating == rating.value] if rating is not None else []

        async def work(conn: AsyncConnection, attempt: int) -> tuple[list[Feedback], int]:
            page = await conn.execute(select(feedback).where(*where).order_by(
                feedback.c.updated_at.desc(), feedback.c.message_id.desc(), feedback.c.principal.desc(),
            ).limit(limit).offset(offset))
            total = await conn.scalar(select(func.count()).select_from(feedback).where(*where))
            return [_feedback_from(r) for r in page], int(total or 0)

        return await transaction(self._engine, work, "list_feedback")


class MySqlVerifiedQueryStore(VerifiedQueryStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_verified(self, query: VerifiedQuery) -> None:
        async def work(conn: AsyncConnection, attempt: int) -> None:
            try:
                await conn.execute(insert(verified_queries).values(_query_values(query)))
            except sa_exc.IntegrityError as exc:
                if error_code(exc) != DUPLICATE_KEY or attempt == 0:  # a duplicate on a retry: it was stored
                    raise
            await _bump(conn)

        await transaction(self._engine, work, "add_verified")

    async def get_verified(self, query_id: str) -> VerifiedQuery | None:
        async def work(conn: AsyncConnection, attempt: int) -> VerifiedQuery | None:
            row = (await conn.execute(select(verified_queries).where(verified_queries.c.query_id == query_id))).first()
            return _query_from(row) if row is not None else None

        return await transaction(self._engine, work, "get_verified")

    async def list_verified(self, limit: int, offset: int) -> tuple[list[VerifiedQuery], int]:
        async def work(conn: AsyncConnection, attempt: int) -> tuple[list[VerifiedQuery], int]:
            page = await conn.execute(select(verified_queries).order_by(
                verified_queries.c.created_at, verified_queries.c.query_id).limit(limit).offset(offset))
            total = await conn.scalar(select(func.count()).select_from(verified_queries))
            return [_query_from(r) for r in page], int(total or 0)

        return await transaction(self._engine, work, "list_verified")

    async def all_verified(self) -> list[VerifiedQuery]:
        async def work(conn: AsyncConnection, attempt: int) -> list[VerifiedQuery]:
            found = await conn.execute(select(verified_queries).order_by(
                verified_queries.c.created_at, verified_queries.c.query_id))
            return [_query_from(r) for r in found]

        return await transaction(self._engine, work, "all_verified")

    async def replace_verified(self, query: VerifiedQuery) -> bool:
        async def work(conn: AsyncConnection, attempt: int) -> bool:
            result = await conn.execute(update(verified_queries).where(
                verified_queries.c.query_id == query.query_id).values(_query_values(query)))
            await _bump(conn)
            # MySQL counts changed rows: an attempt after a lost commit finds the row already as it should be
            return bool(result.rowcount) or (attempt > 0 and await _exists(conn, query.query_id))

        return await transaction(self._engine, work, "replace_verified")

    async def delete_verified(self, query_id: str) -> bool:
        async def work(conn: AsyncConnection, attempt: int) -> bool:
            result = await conn.execute(delete(verified_queries).where(verified_queries.c.query_id == query_id))
            if result.rowcount:
                await _bump(conn)
            return bool(result.rowcount)

        return await transaction(self._engine, work, "delete_verified")

    async def verified_revision(self) -> int:
        async def work(conn: AsyncConnection, attempt: int) -> int:
            return int(await conn.scalar(select(revisions.c.revision).where(revisions.c.name == VERIFIED)) or 0)

        return await transaction(self._engine, work, "verified_revision")


async def _bump(conn: AsyncConnection) -> None:
    statement = upsert(revisions).values(name=VERIFIED, revision=1)
    await conn.execute(statement.on_duplicate_key_update(revision=revisions.c.revision + 1))


async def _exists(conn: AsyncConnection, query_id: str) -> bool:
    found = await conn.scalar(select(verified_queries.c.query_id).where(verified_queries.c.query_id == query_id))
    return found is not None
