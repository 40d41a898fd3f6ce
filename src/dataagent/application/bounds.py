"""Per-principal bounds: how many sessions one principal holds, how many bytes one session stores."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from dataagent.application.ports import SessionRepository
from dataagent.domain.errors import DataAgentError, TooManySessionsError
from dataagent.domain.models import Session


@dataclass(frozen=True, slots=True)
class SessionBounds:
    max_sessions_per_principal: int = 1000
    max_session_bytes: int = 16 * 1024 * 1024


class Bounds:
    """Checked before a new session or a new question is stored (a run's own answer is always written).

    The question's bound is the store's to check, in the same write that stores it (`append_message`'s
    `max_session_bytes`): atomic, and without reading the session first."""

    def __init__(self, repository: SessionRepository, settings: SessionBounds | None = None) -> None:
        self._repo = repository
        self.settings = settings or SessionBounds()

    @property
    def max_session_bytes(self) -> int:
        return self.settings.max_session_bytes

    async def admit_new_session(self, session: Session) -> None:
        """After `session` was created for its principal: if that makes one too many, delete it again and raise
        TooManySessionsError. (Counting after creating costs nothing on the path of an existing session; two
        sessions created at the same moment past the bound may both be refused, never both admitted.)"""
        limit = self.settings.max_sessions_per_principal
        if await self._repo.count_sessions(session.user_id) <= limit:
            return
        with contextlib.suppress(DataAgentError):
            await self._repo.delete_session(session.session_id)
        raise TooManySessionsError(
            f"This principal holds {limit} sessions, the most it may; delete some first",
            details={"max_sessions": limit},
        )
