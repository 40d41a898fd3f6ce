"""Message appends, group-committed: the appends waiting at the same moment go to MySQL in one transaction.

Every answer writes twice (its question, then its answer), and with hundreds of answers at once most of
their cost was per transaction: a pool checkout, a ping, two statements and a COMMIT, each a round trip and
an event-loop wake-up on the core that also streams the tokens. Here an append joins a queue; up to
MAX_IN_FLIGHT writers each take what is waiting (up to MAX_BATCH messages, MAX_BATCH_BYTES of content) and
write it in one transaction of four statements whatever its size, so the cost per append falls as the load
rises, and an append that finds the queue empty is written at once (no added wait). Measured in
bench/store.py and docs/PERFORMANCE.md.

Each message is still atomic (whole or absent) and positions stay gap-free: a batch locks its sessions'
rows in primary-key order (so two batches cannot deadlock), numbers the messages of a session in arrival
order, inserts them in one multi-row INSERT and moves each session's count, last activity and run state in
one UPDATE. A message whose session is gone fails alone (SessionNotFoundError); a batch that fails as a
whole for another reason than an unreachable store (a duplicate message id) is written again one message at
a time, so one bad message never fails the others.

The statements are plain SQL through the driver (engine.driver_cursor): this is the one path every answer
takes. They name the columns of tables.py; the contract suite (tests/contract) runs them all.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dataagent.adapters.mysql import rows
from dataagent.adapters.mysql.engine import driver_cursor, transaction
from dataagent.adapters.mysql.tables import json_text, utc_naive
from dataagent.application.telemetry import NO_TELEMETRY, Telemetry
from dataagent.domain.errors import SessionFullError, SessionNotFoundError, StoreUnavailableError
from dataagent.domain.models import Message, RunState

MAX_IN_FLIGHT = 4  # transactions of appends at once (of the pool's connections)
MAX_BATCH = 64  # messages per transaction
MAX_BATCH_BYTES = 4 * 1024 * 1024  # their content, about; a larger message goes alone

# One append alone. The UPDATE takes the session row's lock (appends to a session queue there until the
# commit) and hands back the new count in the OK packet as the connection's LAST_INSERT_ID: no SELECT.
TAKE_POSITION = (
    "UPDATE sessions SET message_count = LAST_INSERT_ID(message_count + 1), stored_bytes = stored_bytes + %s, "
    "last_active = GREATEST(last_active, CAST(%s AS DATETIME(6))) WHERE session_id = %s"
)
TAKE_POSITION_AND_STATE = (
    "UPDATE sessions SET message_count = LAST_INSERT_ID(message_count + 1), stored_bytes = stored_bytes + %s, "
    "last_active = GREATEST(last_active, CAST(%s AS DATETIME(6))), active_run_id = %s, pending_interrupt = %s "
    "WHERE session_id = %s"
)
WITHIN_BOUND = " AND stored_bytes + %s <= %s"
INSERT_MESSAGE = (  # the driver's executemany sends one multi-row INSERT for many rows
    "INSERT INTO messages (message_id, session_id, `position`, role, content, created_at, run_id, status, "
    "metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(slots=True)
class _Append:
    message: Message
    run_state: RunState | None
    size: int
    done: asyncio.Future[Message]
    stored: int = 0  # what it adds to its session's stored_bytes
    limit: int | None = None  # the session's stored_bytes may not pass it (None: no bound)


@dataclass(slots=True)
class _SessionWrite:
    """What a batch does to one session row: its next position, and after appending, its activity and state."""

    count: int
    stored_before: int
    appended: list[Message] = field(default_factory=list)
    run_state: RunState | None = None
    stored: int = 0

    @property
    def last_active(self) -> datetime:
        return max(m.created_at for m in self.appended)


Outcome = Message | Exception


class Appender:
    def __init__(self, engine: AsyncEngine, telemetry: Telemetry = NO_TELEMETRY) -> None:
        self._engine = engine
        self._telemetry = telemetry  # reports each batch's size (the group commit at work)
        self._waiting: deque[_Append] = deque()
        self._writers: set[asyncio.Task[None]] = set()
        self._running = 0  # writers not yet past their last look at the queue (a done task may not be discarded yet)

    async def append(
        self, message: Message, run_state: RunState | None, size: int, stored: int = 0, limit: int | None = None
    ) -> Message:
        item = _Append(message, run_state, size, asyncio.get_running_loop().create_future(), stored, limit)
        self._waiting.append(item)
        if self._running < MAX_IN_FLIGHT:
            self._running += 1
            writer = asyncio.create_task(self._drain(), name="mysql-appends")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        # a caller cancelled before its batch is taken is left out; once taken, its message is written anyway
        return await item.done

    async def close(self) -> None:
        """Let the batches in flight finish (their callers are waiting for them)."""
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while batch := self._take():
                self._telemetry.commit_batch(len(batch))
                try:
                    outcomes = await self._write(batch)
                except BaseException:  # the writer itself was cancelled (shut down): its callers must not hang
                    self._settle(batch, [StoreUnavailableError("The append was interrupted")] * len(batch))
                    raise
                self._settle(batch, outcomes)
        finally:
            self._running -= 1  # at once, with no await after the queue was seen empty: nothing is left behind

    @staticmethod
    def _settle(batch: list[_Append], outcomes: list[Outcome]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.done.done():  # its caller was cancelled while the batch was written
                continue
            if isinstance(outcome, Exception):
                item.done.set_exception(outcome)
            else:
                item.done.set_result(outcome)

    def _take(self) -> list[_Append]:
        batch: list[_Append] = []
        size = 0
        while self._waiting and len(batch) < MAX_BATCH:
            item = self._waiting[0]
            if batch and size + item.size > MAX_BATCH_BYTES:
                break
            self._waiting.popleft()
            if not item.done.cancelled():
                batch.append(item)
                size += item.size
        return batch

    async def _write(self, batch: list[_Append]) -> list[Outcome]:
        try:
            if len(batch) == 1:
                return [await transaction(self._engine, self._one(batch[0]), "append_message")]
            return await transaction(self._engine, self._many(batch), "append_message")
        except StoreUnavailableError as exc:
            return [exc] * len(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the callers, who see it as the direct call would
            if len(batch) == 1:
                return [exc]
        return [outcome for item in batch for outcome in await self._write([item])]

    @staticmethod
    def _one(item: _Append) -> Any:
        message, run_state = item.message, item.run_state
        at = utc_naive(message.created_at)
        take, params = (TAKE_POSITION, (item.stored, at, message.session_id)) if run_state is None else (
            TAKE_POSITION_AND_STATE,
            (item.stored, at, run_state.active_run_id, json_text(run_state.pending_interrupt), message.session_id))
        if item.limit is not None:  # the bound is checked by the UPDATE itself: no row, no append
            take, params = take + WITHIN_BOUND, (*params, item.stored, item.limit)

        async def work(conn: AsyncConnection, attempt: int) -> Message:
            cursor = await driver_cursor(conn)
            if attempt > 0:  # the previous attempt may have committed before its connection broke
                if await _lock_sessions(cursor, [message.session_id]) and (
                        done := await _stored_positions(cursor, [message])):
                    return _appended(message, done[message.message_id])
            if not await cursor.execute(take, params):
                raise await _missing_or_full(cursor, item)
            position = int(cursor.lastrowid) - 1
            await cursor.execute(INSERT_MESSAGE, rows.message_params(message, position))
            return _appended(message, position)

        return work

    @staticmethod
    def _many(batch: Sequence[_Append]) -> Any:
        messages = [item.message for item in batch]

        async def work(conn: AsyncConnection, attempt: int) -> list[Outcome]:
            cursor = await driver_cursor(conn)
            counts = await _lock_sessions(cursor, sorted({m.session_id for m in messages}))
            done = await _stored_positions(cursor, messages) if attempt > 0 else {}
            writes = {sid: _SessionWrite(count, stored) for sid, (count, stored) in counts.items()}
            outcomes: list[Outcome] = []
            inserts: list[tuple[Any, ...]] = []
            for item in batch:
                message, write = item.message, writes.get(item.message.session_id)
                if message.message_id in done:
                    outcomes.append(_appended(message, done[message.message_id]))
                elif write is None:
                    outcomes.append(SessionNotFoundError())
                elif item.limit is not None and write.stored_before + write.stored + item.stored > item.limit:
                    outcomes.append(SessionFullError.past(item.limit, write.stored_before + write.stored, item.stored))
                else:
                    inserts.append(rows.message_params(message, write.count))
                    outcomes.append(_appended(message, write.count))
                    write.count += 1
                    write.stored += item.stored
                    write.appended.append(message)
                    write.run_state = item.run_state or write.run_state  # the latest one counts
            if inserts:
                await cursor.executemany(INSERT_MESSAGE, inserts)
                await cursor.execute(*_update_sessions({s: w for s, w in writes.items() if w.appended}))
            return outcomes

        return work


def _appended(message: Message, position: int) -> Message:
    return replace(message, position=position, metadata=copy.deepcopy(message.metadata))


async def _lock_sessions(cursor: Any, session_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Lock the sessions' rows in primary-key order and read their counts and stored bytes (absent sessions are
    left out)."""
    marks = ", ".join(["%s"] * len(session_ids))
    await cursor.execute(f"SELECT session_id, message_count, stored_bytes FROM sessions WHERE session_id IN "
                         f"({marks}) ORDER BY session_id FOR UPDATE", session_ids)
    return {sid: (int(count), int(stored)) for sid, count, stored in await cursor.fetchall()}


async def _missing_or_full(cursor: Any, item: _Append) -> Exception:
    """Why the position UPDATE of `item` matched no row: its session is gone, or the message passes its bound."""
    await cursor.execute("SELECT stored_bytes FROM sessions WHERE session_id = %s", (item.message.session_id,))
    row = await cursor.fetchone()
    if row is None or item.limit is None:
        return SessionNotFoundError()
    return SessionFullError.past(item.limit, int(row[0]), item.stored)


async def _stored_positions(cursor: Any, messages: list[Message]) -> dict[str, int]:
    """Which of the messages an earlier attempt stored (its commit's answer lost), and at which position."""
    marks = ", ".join(["%s"] * len(messages))
    await cursor.execute(f"SELECT message_id, session_id, `position` FROM messages WHERE message_id IN ({marks})",
                         [m.message_id for m in messages])
    sessions = {m.message_id: m.session_id for m in messages}
    return {mid: int(position) for mid, sid, position in await cursor.fetchall() if sessions[mid] == sid}


def _update_sessions(writes: dict[str, _SessionWrite]) -> tuple[str, list[Any]]:
    """One UPDATE for the batch's sessions: each its new count, last activity (forward only) and run state."""
    sids = list(writes)
    cases = " ".join(["WHEN %s THEN %s"] * len(sids))
    sql = (f"UPDATE sessions SET message_count = CASE session_id {cases} END, "
           f"stored_bytes = stored_bytes + CASE session_id {cases} END, "
           f"last_active = GREATEST(last_active, CAST(CASE session_id {cases} END AS DATETIME(6)))")
    params: list[Any] = [v for sid in sids for v in (sid, writes[sid].count)]
    params += [v for sid in sids for v in (sid, writes[sid].stored)]
    params += [v for sid in sids for v in (sid, utc_naive(writes[sid].last_active))]
    states = {sid: w.run_state for sid, w in writes.items() if w.run_state is not None}
    if states:
        state_cases = " ".join(["WHEN %s THEN %s"] * len(states))
        sql += (f", active_run_id = CASE session_id {state_cases} ELSE active_run_id END"
                f", pending_interrupt = CASE session_id {state_cases} ELSE pending_interrupt END")
        params += [v for sid, state in states.items() for v in (sid, state.active_run_id)]
        params += [v for sid, state in states.items() for v in (sid, json_text(state.pending_interrupt))]
    sql += f" WHERE session_id IN ({', '.join(['%s'] * len(sids))})"
    return sql, params + sids
