"""Builders shared by the repository contract tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dataagent.application.ports import SessionRepository
from dataagent.domain.approvals import ApprovalAction, ApprovalRequest, InterruptRecord
from dataagent.domain.models import Message, MessagePageQuery, Role, Session

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def new_session(session_id: str, user_id: str = "alice", when: datetime = T0, **kwargs: Any) -> Session:
    return Session(session_id, user_id, f"title of {session_id}", when, when, **kwargs)


def new_message(session_id: str, message_id: str, content: str = "", when: datetime = T0, **kwargs: Any) -> Message:
    return Message(message_id, session_id, kwargs.pop("role", Role.USER), content or f"content of {message_id}",
                   when, **kwargs)


async def seeded(repo: SessionRepository, session_id: str, count: int, user_id: str = "alice") -> list[str]:
    """A session with `count` messages, all at the same instant, whose ids do not sort in append order.

    Message ids are unique across sessions (the IdGenerator makes them so; MySQL keys messages by id).
    """
    await repo.get_or_create_session(new_session(session_id, user_id))
    ids = [f"{session_id}-m{(i * 7919) % 1000:03d}-{i}" for i in range(count)]
    for i, message_id in enumerate(ids):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        await repo.append_message(new_message(session_id, message_id, role=role, run_id=f"run_{i // 2}"))
    return ids


async def history_ids(repo: SessionRepository, session_id: str, limit: int = 1000) -> list[str]:
    page = await repo.list_messages(session_id, MessagePageQuery(limit=limit))
    return [m.message_id for m in page.messages]


def approval(session_id: str, interrupt_id: str, run_id: str = "run_1") -> InterruptRecord:
    action = ApprovalAction("run_sql", {"sql": "SELECT 1", "read_only": True, "注释": "查询 ✅"}, "Run SQL")
    return InterruptRecord(ApprovalRequest(interrupt_id, session_id, run_id, action, at(300)))
