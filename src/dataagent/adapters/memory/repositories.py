"""The embedded in-memory session store: the default product adapter (one process, nothing on disk).

Every method runs without an await between its reads and writes, so each is atomic on the event loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dataagent.domain.approvals import Decision, InterruptRecord
from dataagent.domain.errors import MessageNotFoundError, SessionFullError, SessionNotFoundError
from dataagent.domain.models import Message, MessagePage, MessagePageQuery, RunState, Session, stored_size
from dataagent.domain.requests import QueuedRun, RequestRecord


@dataclass(slots=True)
class _Entry:
    session: Session
    messages: list[Message] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # message_id -> position
    interrupts: dict[str, InterruptRecord] = field(default_factory=dict)
    queue: list[QueuedRun] = field(default_factory=list)
    attached: dict[str, Any] = field(default_factory=dict)  # what stores beside this one keep per session


class InMemorySessionRepository:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._owned: dict[str, set[str]] = {}  # user_id -> its session ids
        self._requests: dict[tuple[str, str], RequestRecord] = {}

    @staticmethod
    def _copy(session: Session) -> Session:
        return replace(
            session,
            metadata=copy.deepcopy(session.metadata),
            pending_interrupt=copy.deepcopy(session.pending_interrupt),
        )

    async def start(self) -> None:
        return None

    async def get_or_create_session(self, session: Session) -> tuple[Session, bool]:
        entry = self._entries.get(session.session_id)
        if entry is not None:
            return self._copy(entry.session), False
        self._entries[session.session_id] = _Entry(self._copy(session))
        self._owned.setdefault(session.user_id, set()).add(session.session_id)
        return self._copy(session), True

    def _forget(self, session_id: str) -> bool:
        entry = self._entries.pop(session_id, None)
        if entry is None:
            return False
        owned = self._owned[entry.session.user_id]
        owned.discard(session_id)
        if not owned:
            del self._owned[entry.session.user_id]
        return True

    def attached(self, session_id: str) -> dict[str, Any] | None:
        """A dict that lives and dies with the session, for the stores beside this one (feedback); None if the
        session does not exist."""
        entry = self._entries.get(session_id)
        return entry.attached if entry is not None else None

    async def get_session(self, session_id: str) -> Session | None:
        entry = self._entries.get(session_id)
        return self._copy(entry.session) if entry else None

    async def list_sessions(
        self, user_id: str, limit: int, offset: int, end_user: str | None = None
    ) -> tuple[list[Session], int]:
        owned = [e.session for e in (self._entries[sid] for sid in self._owned.get(user_id, ()))
                 if end_user in (None, e.session.end_user)]
        owned.sort(key=lambda s: (s.last_active, s.session_id), reverse=True)
        return [self._copy(s) for s in owned[offset : offset + limit]], len(owned)

    async def count_sessions(self, user_id: str) -> int:
        return len(self._owned.get(user_id, ()))

    async def set_run_state(
        self,
        session_id: str,
        *,
        active_run_id: str | None,
        pending_interrupt: dict[str, Any] | None,
        touched_at: datetime | None = None,
    ) -> None:
        entry = self._entries.get(session_id)
        if entry is None:
            return
        entry.session.active_run_id = active_run_id
        entry.session.pending_interrupt = copy.deepcopy(pending_interrupt)
        if touched_at is not None:
            entry.session.last_active = max(entry.session.last_active, touched_at)

    async def list_active_runs(self) -> list[tuple[str, str]]:
        return [(sid, e.session.active_run_id) for sid, e in self._entries.items() if e.session.active_run_id]

    async def clear_run_states(self) -> int:
        cleared = 0
        for entry in self._entries.values():
            if entry.session.active_run_id is not None or entry.session.pending_interrupt is not None:
                entry.session.active_run_id = None
                entry.session.pending_interrupt = None
                cleared += 1
        return cleared

    async def delete_session(self, session_id: str) -> bool:
        return self._forget(session_id)

    async def append_message(
        self, message: Message, run_state: RunState | None = None, max_session_bytes: int | None = None
    ) -> Message:
        entry = self._entries.get(message.session_id)
        if entry is None:
            raise SessionNotFoundError()
        size = stored_size(message.content, message.metadata)
        if max_session_bytes is not None and entry.session.stored_bytes + size > max_session_bytes:
            raise SessionFullError.past(max_session_bytes, entry.session.stored_bytes, size)
        stored = replace(message, position=len(entry.messages), metadata=copy.deepcopy(message.metadata))
        entry.messages.append(stored)
        entry.index[stored.message_id] = stored.position
        entry.session.message_count = len(entry.messages)
        entry.session.stored_bytes += size
        entry.session.last_active = max(entry.session.last_active, stored.created_at)
        if run_state is not None:
            entry.session.active_run_id = run_state.active_run_id
            entry.session.pending_interrupt = copy.deepcopy(run_state.pending_interrupt)
        return stored

    def every_attached(self) -> list[dict[str, Any]]:
        """The `attached` dict of every session."""
        return [entry.attached for entry in self._entries.values()]

    def has_message(self, session_id: str, message_id: str) -> bool:
        entry = self._entries.get(session_id)
        return entry is not None and message_id in entry.index

    async def get_message(self, session_id: str, message_id: str) -> Message | None:
        entry = self._entries.get(session_id)
        if entry is None or message_id not in entry.index:
            return None
        return entry.messages[entry.index[message_id]]

    async def list_messages(self, session_id: str, query: MessagePageQuery) -> MessagePage:
        entry = self._entries.get(session_id)
        if entry is None:
            raise SessionNotFoundError()
        total = len(entry.messages)
        if query.after is not None:
            start = self._position(entry, query.after) + 1
            end = min(total, start + query.limit)
            return MessagePage(entry.messages[start:end], total, end < total)
        if query.before is not None:
            end = self._position(entry, query.before)
            start = max(0, end - query.limit)
            return MessagePage(entry.messages[start:end], total, start > 0)
        start = query.offset
        end = min(total, start + query.limit)
        return MessagePage(entry.messages[start:end], total, end < total)

    @staticmethod
    def _position(entry: _Entry, message_id: str) -> int:
        position = entry.index.get(message_id)
        if position is None:
            raise MessageNotFoundError(details={"message_id": message_id})
        return position

    async def save_interrupt(self, record: InterruptRecord) -> None:
        entry = self._entries.get(record.request.session_id)
        if entry is None:
            raise SessionNotFoundError()
        entry.interrupts[record.request.interrupt_id] = InterruptRecord(record.request)

    async def get_interrupt(self, session_id: str, interrupt_id: str) -> InterruptRecord | None:
        entry = self._entries.get(session_id)
        record = entry.interrupts.get(interrupt_id) if entry else None
        return replace(record) if record else None

    async def resolve_interrupt(
        self, session_id: str, interrupt_id: str, decision: Decision, decided_at: datetime
    ) -> bool:
        entry = self._entries.get(session_id)
        record = entry.interrupts.get(interrupt_id) if entry else None
        if record is None or record.decision is not None:
            return False
        record.decision = decision
        record.decided_at = decided_at
        return True

    async def delete_idle_sessions(self, idle_before: datetime, limit: int) -> list[str]:
        idle = [
            sid for sid, e in self._entries.items()
            if e.session.last_active < idle_before and e.session.active_run_id is None
        ][:limit]
        for sid in idle:
            self._forget(sid)
        return idle

    # -- idempotency keys and queued questions ----------------------------------------------------

    async def claim_request(self, record: RequestRecord) -> RequestRecord | None:
        held = await self.get_request(record.principal, record.key, record.created_at)
        if held is not None:
            return held
        self._requests[(record.principal, record.key)] = replace(record, outcome=copy.deepcopy(record.outcome))
        return None

    async def get_request(self, principal: str, key: str, now: datetime) -> RequestRecord | None:
        held = self._requests.get((principal, key))
        if held is None or held.expires_at <= now:
            return None
        return replace(held, outcome=copy.deepcopy(held.outcome))

    async def settle_request(self, principal: str, key: str, outcome: dict[str, Any]) -> None:
        held = self._requests.get((principal, key))
        if held is not None:
            held.outcome = copy.deepcopy(outcome)

    async def release_request(self, principal: str, key: str) -> None:
        self._requests.pop((principal, key), None)

    async def delete_expired_requests(self, now: datetime, limit: int) -> int:
        expired = [k for k, r in self._requests.items() if r.expires_at <= now][:limit]
        for k in expired:
            del self._requests[k]
        return len(expired)

    async def enqueue_run(self, item: QueuedRun, max_queued: int | None, front: bool = False) -> int | None:
        entry = self._entries.get(item.session_id)
        if entry is None:
            raise SessionNotFoundError()
        if max_queued is not None and len(entry.queue) >= max_queued:
            return None
        stored = replace(item, metadata=copy.deepcopy(item.metadata))
        if front:
            entry.queue.insert(0, stored)
            return 1
        entry.queue.append(stored)
        return len(entry.queue)

    async def next_queued_run(self, session_id: str) -> QueuedRun | None:
        entry = self._entries.get(session_id)
        return replace(entry.queue[0]) if entry and entry.queue else None

    async def take_queued_run(self, session_id: str, run_id: str) -> bool:
        entry = self._entries.get(session_id)
        kept = [q for q in entry.queue if q.run_id != run_id] if entry else []
        if entry is None or len(kept) == len(entry.queue):
            return False
        entry.queue = kept
        return True

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
