"""Feedback and verified queries in memory (one process, nothing on disk), beside the in-memory session store.

Every method runs without an await between its reads and writes, but for the sweep of feedback on deleted
sessions, which only drops entries.
"""

from __future__ import annotations

from dataclasses import replace

from dataagent.application.feedback import FeedbackStore
from dataagent.application.ports import SessionRepository
from dataagent.application.verified import VerifiedQueryStore
from dataagent.domain.feedback import Feedback, VerifiedQuery

SWEEP_EVERY = 100  # writes between sweeps of the feedback on sessions that are gone


class InMemoryFeedbackStore(FeedbackStore):
    """On the in-memory session store: feedback on a deleted or expired session is swept away on later writes."""

    def __init__(self, repository: SessionRepository) -> None:
        self._repo = repository
        self._feedback: dict[tuple[str, str, str], Feedback] = {}  # (session, message, principal)
        self._writes = 0

    async def put_feedback(self, feedback: Feedback) -> Feedback:
        key = (feedback.session_id, feedback.message_id, feedback.principal)
        earlier = self._feedback.get(key)
        stored = feedback if earlier is None else replace(feedback, created_at=earlier.created_at)
        self._feedback[key] = stored
        self._writes += 1
        if self._writes % SWEEP_EVERY == 0:
            await self._sweep()
        return stored

    async def get_feedback(self, session_id: str, message_id: str, principal: str) -> Feedback | None:
        return self._feedback.get((session_id, message_id, principal))

    async def _sweep(self) -> None:
        for session_id in {key[0] for key in self._feedback}:
            if await self._repo.get_session(session_id) is None:
                for key in [k for k in self._feedback if k[0] == session_id]:
                    del self._feedback[key]


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
