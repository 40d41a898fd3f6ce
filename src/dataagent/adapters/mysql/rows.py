"""Rows <-> domain objects, and the reads the repository's methods share. Nothing outside this package ever
sees a row."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from dataagent.adapters.mysql.tables import json_text, messages, sessions, utc_naive
from dataagent.domain.approvals import ApprovalAction, ApprovalRequest, Decision, InterruptRecord
from dataagent.domain.errors import InvalidInputError, MessageNotFoundError
from dataagent.domain.models import Message, Role, Session

# MySQL escapes these bytes in a string literal, doubling them on the wire
_ESCAPED = (b"\\", b"'", b'"', b"\x00", b"\n", b"\r", b"\x1a")
STATEMENT_OVERHEAD = 64 * 1024


def session_values(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "title": session.title,
        "created_at": session.created_at,
        "last_active": session.last_active,
        "message_count": session.message_count,
        "stored_bytes": session.stored_bytes,
        "active_run_id": session.active_run_id,
        "pending_interrupt": session.pending_interrupt,
        "metadata": session.metadata,
        "end_user": session.end_user,
    }


def session_from(row: Row[Any]) -> Session:
    m = row._mapping
    return Session(
        session_id=m["session_id"],
        user_id=m["user_id"],
        title=m["title"],
        created_at=m["created_at"],
        last_active=m["last_active"],
        message_count=m["message_count"],
        stored_bytes=int(m["stored_bytes"]),
        active_run_id=m["active_run_id"],
        pending_interrupt=m["pending_interrupt"],
        metadata=m["metadata"] or {},
        end_user=m["end_user"],
    )


def message_params(message: Message, position: int) -> tuple[Any, ...]:
    """The values of appends.INSERT_MESSAGE, in its column order (driver-ready: naive UTC, JSON text)."""
    return (message.message_id, message.session_id, position, Role(message.role).value, message.content,
            utc_naive(message.created_at), message.run_id, message.status, json_text(message.metadata))


def message_from(row: Row[Any]) -> Message:
    m = row._mapping
    return Message(
        message_id=m["message_id"],
        session_id=m["session_id"],
        role=Role(m["role"]),
        content=m["content"],
        created_at=m["created_at"],
        run_id=m["run_id"],
        status=m["status"],
        metadata=m["metadata"] or {},
        position=m["position"],
    )


def wire_size(message: Message, metadata_json: str) -> int:
    """A bound on the bytes of the INSERT statement of `message`, escapes included."""
    try:
        content = message.content.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError("message content is not valid Unicode text (lone surrogate)") from None
    escaped = sum(content.count(b) for b in _ESCAPED)
    return len(content) + escaped + 2 * len(metadata_json.encode("utf-8", "replace")) + STATEMENT_OVERHEAD


def request_json(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "action": request.action.as_dict(),
        "expires_at": request.expires_at.isoformat(),
        "allowed_decisions": list(request.allowed_decisions),
    }


def interrupt_values(record: InterruptRecord) -> dict[str, Any]:
    request = record.request
    return {
        "interrupt_id": request.interrupt_id,
        "session_id": request.session_id,
        "run_id": request.run_id,
        "request": request_json(request),
        "decision": None,
        "decided_at": None,
    }


def interrupt_from(row: Row[Any]) -> InterruptRecord:
    m = row._mapping
    raw = m["request"]
    action = raw["action"]
    request = ApprovalRequest(
        interrupt_id=m["interrupt_id"],
        session_id=m["session_id"],
        run_id=m["run_id"],
        action=ApprovalAction(action["name"], dict(action.get("args") or {}), action.get("description", "")),
        expires_at=datetime.fromisoformat(raw["expires_at"]),
        allowed_decisions=tuple(raw["allowed_decisions"]),
    )
    decision = Decision.from_dict(m["decision"]) if m["decision"] is not None else None
    return InterruptRecord(request, decision, m["decided_at"])


def copy_session(session: Session) -> Session:
    return replace(
        session, metadata=copy.deepcopy(session.metadata), pending_interrupt=copy.deepcopy(session.pending_interrupt)
    )


def decision_json(decision: Decision) -> Any:
    """The decision as the JSON column gives it back."""
    return json.loads(json.dumps(decision.as_dict(), default=str))


async def read_session(conn: AsyncConnection, session_id: str) -> Session | None:
    row = (await conn.execute(select(sessions).where(sessions.c.session_id == session_id))).first()
    return session_from(row) if row is not None else None


async def count_sessions(conn: AsyncConnection, whose: ColumnElement[bool]) -> int:
    return int(await conn.scalar(select(func.count()).select_from(sessions).where(whose)) or 0)


async def read_message(conn: AsyncConnection, session_id: str, message_id: str) -> Message | None:
    row = (await conn.execute(
        select(messages).where(messages.c.session_id == session_id, messages.c.message_id == message_id)
    )).first()
    return message_from(row) if row is not None else None


async def message_position(conn: AsyncConnection, session_id: str, message_id: str) -> int:
    position = await conn.scalar(
        select(messages.c.position).where(messages.c.session_id == session_id, messages.c.message_id == message_id)
    )
    if position is None:
        raise MessageNotFoundError(details={"message_id": message_id})
    return int(position)
