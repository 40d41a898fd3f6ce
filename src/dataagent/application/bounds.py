"""Per-principal bounds: how many sessions one principal holds, how many bytes one session stores."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from dataagent.application.ports import SessionRepository
from dataagent.domain.errors import DataAgentError, SessionFullError, TooManySessionsError
from dataagent.domain.models import Session, stored_size


@dataclass(frozen=True, slots=True)
class SessionBounds:
    max_sessions_per_principal: int = 1000
    max_session_bytes: int = 16 * 1024 * 1024


class Bounds:
    """Checked before a new session or a new question is stored (a run's own answer is always written)."""

    def __init__(self, repository: SessionRepository, settings: SessionBounds | None = None) -> None:
        self._repo = repository
        self.settings = settings or SessionBounds()

    async def admit_new_session(self, session: Session) -> None:
        """After `session` was created for its principal: if that makes one too many, delete it again and raise
        TooManySessionsError. (Counting after creating costs nothing on the path of an existing session;
        principals creating at the same moment may both be refused, never both admitted past the bound.)"""
        limit = self.settings.max_sessions_per_principal
        _, total = await self._repo.list_sessions(session.user_id, 1, 0)
        if total <= limit:
            return
        with contextlib.suppress(DataAgentError):
            await self._repo.delete_session(session.session_id)
        raise TooManySessionsError(
            f"This principal holds {limit} sessions, the most it may; delete some first",
            details={"max_sessions": limit},
        )

    def admit_question(self, session: Session, question: str, metadata: dict[str, Any] | None) -> None:
        """SessionFullError if storing the question would take the session past its stored bytes."""
        limit = self.settings.max_session_bytes
        size = stored_size(question, metadata)
        if session.stored_bytes + size > limit:
            raise SessionFullError(
                f"This session stores {session.stored_bytes} bytes; with this question it would pass its "
                f"bound of {limit}: start a new session",
                details={"max_session_bytes": limit, "stored_bytes": session.stored_bytes, "question_bytes": size},
            )

    async def admit_question_in(self, session_id: str, question: str, metadata: dict[str, Any] | None) -> None:
        """`admit_question` for a session known only by its id (a missing one is left to the caller)."""
        session = await self._repo.get_session(session_id)
        if session is not None:
            self.admit_question(session, question, metadata)
