"""Verified queries: an admin promotes an answered question with the SQL it ran (or writes one), lists, edits
and deletes them; the engine gets the most similar ones as examples for a new question (docs/VERIFIED.md)."""

from __future__ import annotations

from typing import Protocol

from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.domain.errors import (
    InvalidInputError,
    MessageNotFoundError,
    SessionNotFoundError,
    VerifiedQueryNotFoundError,
)
from dataagent.domain.feedback import MAX_QUESTION_CHARS, MAX_SQL_CHARS, VerifiedQuery, bounded_text
from dataagent.domain.models import Message, MessagePageQuery, Role

RUN_SQL = "run_sql"
RUN_SCAN = 1000  # the messages before an answer searched for its run's question and SQL


class VerifiedQueryStore(Protocol):
    """The verified queries; each method is atomic on its own, and every change moves the revision."""

    async def add_verified(self, query: VerifiedQuery) -> None:
        """Store a new verified query."""
        ...

    async def get_verified(self, query_id: str) -> VerifiedQuery | None:
        """One verified query, or None."""
        ...

    async def list_verified(self, limit: int, offset: int) -> tuple[list[VerifiedQuery], int]:
        """A page of the verified queries, oldest first, and their total."""
        ...

    async def all_verified(self) -> list[VerifiedQuery]:
        """Every verified query (for the engine's index)."""
        ...

    async def replace_verified(self, query: VerifiedQuery) -> bool:
        """Store `query` over the one with its id; False if there is none."""
        ...

    async def delete_verified(self, query_id: str) -> bool:
        """Delete it; False if there was none."""
        ...

    async def verified_revision(self) -> int:
        """A number that changes whenever a verified query is added, changed or deleted (by any process)."""
        ...


class ExampleFinder(Protocol):
    async def similar(self, question: str, principal: str | None) -> list[VerifiedQuery]:
        """The few verified queries most like `question` that `principal` may be shown (none may match)."""
        ...


class VerifiedQueryService:
    """What the `admin` scope may do with verified queries (the routes check the scope)."""

    def __init__(
        self, repository: SessionRepository, store: VerifiedQueryStore, clock: Clock, ids: IdGenerator
    ) -> None:
        self._repo = repository
        self._store = store
        self._clock = clock
        self._ids = ids

    async def create(self, principal: str, question: str, sql: str, source: str | None = None) -> VerifiedQuery:
        now = self._clock.now()
        query = VerifiedQuery(
            self._ids.new_id("vq"), bounded_text(question, "question", MAX_QUESTION_CHARS),
            bounded_text(sql, "sql", MAX_SQL_CHARS), principal, now, now, source,
        )
        await self._store.add_verified(query)
        return query

    async def promote(self, principal: str, session_id: str, message_id: str) -> VerifiedQuery:
        """The question of a completed answer (any session's: the admin curates them all) with the last SQL its
        run executed successfully."""
        if await self._repo.get_session(session_id) is None:
            raise SessionNotFoundError()
        answer = await self._repo.get_message(session_id, message_id)
        if answer is None:
            raise MessageNotFoundError()
        if answer.role is not Role.ASSISTANT or answer.status != "completed":
            raise InvalidInputError("only a completed answer (an assistant message) can be promoted")
        question, sql = await self._question_and_sql(answer)
        return await self.create(principal, question, sql, source=message_id)

    async def _question_and_sql(self, answer: Message) -> tuple[str, str]:
        query = MessagePageQuery(limit=RUN_SCAN, before=answer.message_id)
        page = await self._repo.list_messages(answer.session_id, query)
        run = [m for m in page.messages if m.run_id == answer.run_id]
        question = next((m.content for m in run if m.role is Role.USER), None)
        executed = [m.metadata.get("sql") for m in run if m.role is Role.TOOL and m.status == "success"
                    and m.metadata.get("tool_name") == RUN_SQL]
        sql = next((s for s in reversed(executed) if isinstance(s, str) and s.strip()), None)
        if question is None or sql is None:
            raise InvalidInputError("this answer executed no SQL statement to verify")
        return question, sql

    async def list(self, limit: int, offset: int) -> tuple[list[VerifiedQuery], int]:
        return await self._store.list_verified(limit, offset)

    async def get(self, query_id: str) -> VerifiedQuery:
        query = await self._store.get_verified(query_id)
        if query is None:
            raise VerifiedQueryNotFoundError()
        return query

    async def update(self, query_id: str, question: str | None, sql: str | None) -> VerifiedQuery:
        """Change the question, the SQL or both."""
        query = await self.get(query_id)
        changed = VerifiedQuery(
            query.query_id,
            query.question if question is None else bounded_text(question, "question", MAX_QUESTION_CHARS),
            query.sql if sql is None else bounded_text(sql, "sql", MAX_SQL_CHARS),
            query.created_by, query.created_at, self._clock.now(), query.source_message_id,
        )
        if not await self._store.replace_verified(changed):
            raise VerifiedQueryNotFoundError()
        return changed

    async def delete(self, query_id: str) -> None:
        if not await self._store.delete_verified(query_id):
            raise VerifiedQueryNotFoundError()
