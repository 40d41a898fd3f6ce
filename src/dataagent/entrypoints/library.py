"""Embedding DataAgent as a library: the use cases without HTTP.

    async with open_agent(Settings(agent="demo")) as agent:
        async for event in agent.stream("SELECT name FROM products LIMIT 3"):
            ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from dataagent.application.chat import ChatService, RunOutcome
from dataagent.application.sessions import SessionService
from dataagent.domain.events import RunEvent
from dataagent.domain.models import MessagePage, MessagePageQuery, Session
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.lifecycle import build_lifecycle
from dataagent.entrypoints.settings import Settings, load_settings

LIBRARY_PRINCIPAL = "library"


class DataAgent:
    """Ask questions, stream their events, decide approvals and read history, as one principal."""

    def __init__(self, container: Container, principal: str = LIBRARY_PRINCIPAL) -> None:
        self._container = container
        self.principal = principal

    @property
    def _chat(self) -> ChatService:
        return self._container.chat_service()

    @property
    def _sessions(self) -> SessionService:
        return self._container.session_service()

    def stream(
        self, question: str, session_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> AsyncGenerator[RunEvent, None]:
        """The run's events until `done`, or until a `hitl` event asks for a decision."""
        return self._chat.stream(self.principal, question, session_id, metadata)

    async def ask(self, question: str, session_id: str | None = None) -> RunOutcome:
        """Ask and wait for the answer, or for the approval it needs (status `awaiting_approval`)."""
        return await self._chat.chat(self.principal, question, session_id)

    def decide_stream(
        self, session_id: str, decision: dict[str, Any], interrupt_id: str | None = None
    ) -> AsyncGenerator[RunEvent, None]:
        """Decide (`{"type": "approve" | "reject" | "edit", "args"?, "message"?}`), then follow the run."""
        return self._chat.decide_stream(self.principal, session_id, interrupt_id, [decision])

    async def decide(
        self, session_id: str, decision: dict[str, Any], interrupt_id: str | None = None
    ) -> RunOutcome:
        return await self._chat.decide_and_wait(self.principal, session_id, interrupt_id, [decision])

    async def cancel(self, session_id: str) -> str:
        return await self._chat.cancel(self.principal, session_id)

    async def session(self, session_id: str) -> Session:
        return await self._sessions.get(self.principal, session_id)

    async def history(self, session_id: str, limit: int = 100, offset: int = 0) -> MessagePage:
        return await self._sessions.messages(self.principal, session_id, MessagePageQuery(limit, offset))


@contextlib.asynccontextmanager
async def open_agent(settings: Settings | None = None) -> AsyncIterator[DataAgent]:
    """Build the services from `settings` (the environment if None), and release them on exit."""
    container = Container(settings=settings or load_settings())
    async with build_lifecycle(container):
        yield DataAgent(container)
