"""The Redis broker's Lua scripts, its event encoding, and the replay rule."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dataagent.domain.events import EventType, RunEvent

# Claim: refuse if a run holds the session; else record the run and its lease, and return the last issued seq.
# A session's numbering starts at a clock-based floor, so a seq key that expired or a Redis that lost its data
# never lets a seq be reused; afterwards it goes on +1 whichever process runs the session.
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return tonumber(redis.call('GET', KEYS[3]) or ARGV[4])
"""
# Release: only the claimant removes its claim; the seq counter moves up to the last seq it issued.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
local last = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[3]) > last then last = tonumber(ARGV[3]) end
redis.call('SET', KEYS[3], last, 'PX', ARGV[4])
return 1
"""
# The last issued seq of a session, starting its numbering at the floor if it has none.
LAST_SEQ = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return tonumber(redis.call('GET', KEYS[1]))
"""


def floor_seq() -> int:
    """The clock-based lowest seq a new numbering may start from (see the memory broker)."""
    return int(time.time() * 1000) * 1000


def encode_event(event: RunEvent) -> dict[str, Any]:
    return {"t": event.event_type, "d": event.data, "r": event.run_id, "s": event.seq,
            "ts": event.timestamp.timestamp()}


def decode_event(session_id: str, raw: dict[str, Any]) -> RunEvent:
    return RunEvent(raw["t"], raw["d"], session_id, raw["r"], raw["s"], datetime.fromtimestamp(raw["ts"], UTC))


def replay_from(
    held: list[RunEvent], after_seq: int | None, active_run: str | None, known_seq: int
) -> tuple[list[RunEvent], bool]:
    """The held events after `after_seq` (None: from the active run's start), or none if some are missing.

    `known_seq` is the last seq this process knows of; events after the held ones reach a new subscription
    live, so only a gap inside the held range, or an `after_seq` beyond anything known, is a loss.
    """
    if after_seq is None:
        if active_run is None:
            return [], True
        starts = [e.seq for e in held if e.event_type == EventType.RUN_STARTED and e.run_id == active_run]
        if not starts:
            return [], True
        after_seq = starts[-1] - 1
    if after_seq > max(known_seq, held[-1].seq if held else 0):
        return [], False
    events = [e for e in held if e.seq > after_seq]
    complete = after_seq == known_seq if not held else (
        after_seq >= held[-1].seq or (bool(events) and events[0].seq == after_seq + 1))
    return (events, True) if complete else ([], False)  # a gap: the client reloads history instead
