"""Feedback on answers: one rating per principal and assistant message, given again to change it."""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from dataagent.application.ports import Clock, SessionRepository
from dataagent.application.watch import SessionWatch
from dataagent.domain.callers import Caller, Who
from dataagent.domain.errors import FeedbackNotFoundError, InvalidInputError, MessageNotFoundError
from dataagent.domain.feedback import MAX_COMMENT_CHARS, Feedback, Rating, bounded_text
from dataagent.domain.models import Message, Role


class FeedbackStore(Protocol):
    """Feedback by (message, principal); each method is atomic on its own."""

    async def put_feedback(self, feedback: Feedback) -> Feedback:
        """Store it, replacing the principal's earlier feedback on the message (whose created_at is kept); the
        stored feedback. SessionNotFoundError if the session or message is gone."""
        ...

    async def get_feedback(self, session_id: str, message_id: str, principal: str) -> Feedback | None:
        """The principal's feedback on the session's message, or None."""
        ...

    async def list_feedback(self, rating: Rating | None, limit: int, offset: int) -> tuple[list[Feedback], int]:
        """A page of every principal's feedback (only `rating`'s, if given), most recently changed first, and
        their total."""
        ...


class FeedbackService:
    """Give and read feedback on the caller's own sessions (another principal's session: session_not_found)."""

    def __init__(self, repository: SessionRepository, store: FeedbackStore, watch: SessionWatch, clock: Clock) -> None:
        self._repo = repository
        self._store = store
        self._watch = watch
        self._clock = clock

    async def give(
        self, who: Who, session_id: str, message_id: str, rating: str, comment: str | None = None
    ) -> Feedback:
        """Rate an assistant message of the caller's session; a second call replaces the first. An end user's
        feedback is its own (kept as `principal:end_user`)."""
        await self._assistant_message(who, session_id, message_id)
        principal = Caller.of(who).subject
        try:
            value = Rating(rating)
        except ValueError:
            raise InvalidInputError("rating must be 'up' or 'down'") from None
        text = bounded_text(comment or "", "comment", MAX_COMMENT_CHARS, required=False)
        now = self._clock.now()
        feedback = Feedback(session_id, message_id, principal, value, text, now, now)
        stored = await self._store.put_feedback(feedback)
        return replace(stored, principal=principal)

    async def read(self, who: Who, session_id: str, message_id: str) -> Feedback:
        """The caller's feedback on the message; FeedbackNotFoundError if it gave none."""
        await self._assistant_message(who, session_id, message_id)
        principal = Caller.of(who).subject
        feedback = await self._store.get_feedback(session_id, message_id, principal)
        if feedback is None:
            raise FeedbackNotFoundError()
        return feedback

    async def list_all(self, rating: str | None, limit: int, offset: int) -> tuple[list[Feedback], int]:
        """Every principal's feedback, most recently changed first, for an admin choosing answers to promote."""
        return await self._store.list_feedback(Rating(rating) if rating is not None else None, limit, offset)

    async def _assistant_message(self, principal: Who, session_id: str, message_id: str) -> Message:
        await self._watch.owned(principal, session_id)
        message = await self._repo.get_message(session_id, message_id)
        if message is None:
            raise MessageNotFoundError()
        if message.role is not Role.ASSISTANT:
            raise InvalidInputError("feedback is given on assistant messages (answers) only")
        return message
