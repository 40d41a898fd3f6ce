"""Feedback and verified queries in memory (one process, nothing on disk), beside the in-memory session store.

Feedback lives in the session's entry of the session store (`attached`), so it goes with the session. Every
method runs without an await between its reads and writes, so each is atomic on the event loop.
"""

from __future__ import annotations

from dataclasses import replace

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.application.feedback import FeedbackStore
from dataagent.application.verified import VerifiedQueryStore
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.feedback import Feedback, Rating, VerifiedQuery

FEEDBACK = "feedback"


class InMemoryFeedbackStore(FeedbackStore):
    def __init__(self, repository: InMemorySessionRepository) -> None:
        self._repo = repository

    async def put_feedback(self, feedback: Feedback) -> Feedback:
        held = self._held(feedback.session_id, feedback.message_id)
        if held is None:
            raise SessionNotFoundError()
        key = (feedback.message_id, feedback.principal)
        earlier = held.get(key)
        stored = feedback if earlier is None else replace(feedback, created_at=earlier.created_at)
        held[key] = stored
        return stored

    async def get_feedback(self, session_id: str, message_id: str, principal: str) -> Feedback | None:
        held = self._held(session_id, message_id)
        return held.get((message_id, principal)) if held is not None else None

    async def list_feedback(self, rating: Rating | None, limit: int, offset: int) -> tuple[list[Feedback], int]:
        every = [f for held in self._repo.every_attached() for f in held.get(FEEDBACK, {}).values()
                 if rating is None or f.rating is rating]
        every.sort(key=lambda f: (f.updated_at, f.message_id, f.principal), reverse=True)
        return every[offset : offset + limit], len(every)

    def _held(self, session_id: str, message_id: str) -> dict[tuple[str, str], Feedback] | None:
        """The session's feedback, if the session holds the message."""
        attached = self._repo.attached(session_id)
        if attached is None or not self._repo.has_message(session_id, message_id):
            return None
        held: dict[tuple[str, str], Feedback] = attached.setdefault(FEEDBACK, {})
        return held


class InMemoryVerifiedQueryStore(VerifiedQueryStore):
    def __init__(self) -> None:
        self._queries: dict[str, VerifiedQuery] = {}  # in the order they were added
        self._revision = 0

    async def add_verified(self, query: VerifiedQuery) -> None:
        self._queries[query.query_id] = query
        self._revision += 1

    async def get_verified(self, query_id: str) -> VerifiedQuery | None:
        return self._queries.get(query_id)

    async def list_verified(self, limit: int, offset: int) -> tuple[list[VerifiedQuery], int]:
        queries = list(self._queries.values())
        return queries[offset : offset + limit], len(queries)

    async def all_verified(self) -> list[VerifiedQuery]:
        return list(self._queries.values())

    async def replace_verified(self, query: VerifiedQuery) -> bool:
        if query.query_id not in self._queries:
            return False
        self._queries[query.query_id] = query
        self._revision += 1
        return True

    async def delete_verified(self, query_id: str) -> bool:
        if self._queries.pop(query_id, None) is None:
            return False
        self._revision += 1
        return True

    async def verified_revision(self) -> int:
        return self._revision
