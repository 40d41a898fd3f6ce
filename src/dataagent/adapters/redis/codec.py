"""The Redis broker's Lua scripts, its event encoding, and the replay rule."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.inputs import printable_value

log = logging.getLogger("dataagent.redis")

# Claim: refuse if a run holds the session; else record the run and its lease, and return the last issued seq.
# A session's numbering starts at a clock-based floor, so a seq key that expired or a Redis that lost its data
# never lets a seq be reused; afterwards it goes on +1 whichever process runs the session.
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return tonumber(redis.call('GET', KEYS[3]) or ARGV[4])
"""
# Flush: append a batch of events to the session's stream (entry id = the batch's last seq, trimmed by MINID)
# and move the seq counter up to it; with KEYS[3..5], also release a claim in the same step, so that a process
# that sees the batch (a run's `done`) finds the session free, and a claim after the release numbers on from
# the batch: the claim value goes only if it is still this run's; its lease goes; its checkpoint is marked
# released (an owner that was cut off must not take the session back by renewing).
# KEYS: ev, seq [, run, leases, ckpt]; ARGV: owner, payload, entry id, minid, stream ttl, seq ttl, last seq
# [, claim value, lease member, ckpt ttl]. Returns 1, or 0 if the stream had moved past the batch (dropped).
FLUSH = """
local written = 1
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] ~= '' then
  if tonumber(ARGV[7]) <= last and redis.call('EXISTS', KEYS[1]) == 0 then
    written = 0  -- a late batch of a dropped session (see DROP): never into the new life of its id
  else
    local ok = redis.pcall('XADD', KEYS[1], 'MINID', ARGV[4], ARGV[3], 'o', ARGV[1], 'e', ARGV[2])
    if type(ok) == 'table' and ok.err then written = 0 end
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
end
if tonumber(ARGV[7]) > last then
  redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[6])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if #KEYS > 2 then
  if redis.call('GET', KEYS[3]) == ARGV[8] then redis.call('DEL', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[9])
  redis.call('SET', KEYS[5], '{"released":true}', 'PX', ARGV[10])
end
return written
"""
# Renew: while the claim is still this owner's, push its lease and store its checkpoint. A claim that vanished
# with no checkpoint left (Redis restarted empty) is taken back; one released or taken by another is lost (0).
# KEYS: run, leases, ckpt; ARGV: claim value, lease member, expiry, checkpoint, ckpt ttl.
RENEW = """
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then
  if v or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
return 1
"""
# Drop: a session deleted or expired loses its stream (the replay buffer) and its watchers; its seq counter moves
# to max(last, floor) + 1, so the next life of the id numbers from there: above, and not next to, every old seq.
# KEYS: ev, seq, watch; ARGV: floor, seq ttl. Returns the counter's new value.
DROP = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
local base = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[3])
return base
"""
# The last issued seq of a session, starting its numbering at the floor if it has none.
LAST_SEQ = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return tonumber(redis.call('GET', KEYS[1]))
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def floor_seq() -> int:
    """The clock-based lowest seq a new numbering may start from (see the memory broker)."""
    return int(time.time() * 1000) * 1000


def encode_event(event: RunEvent) -> dict[str, Any]:
    # the time in whole microseconds: every process shows the event with the very same timestamp
    return {"t": event.event_type, "d": event.data, "r": event.run_id, "s": event.seq,
            "us": (event.timestamp - _EPOCH) // _MICROSECOND}


def encode_events(events: list[RunEvent]) -> bytes:
    """A batch of events as the JSON of a stream entry; never raises (bad text or values are replaced)."""
    batch = [encode_event(e) for e in events]
    try:
        return orjson.dumps(batch)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, too deep, an integer beyond 64 bits
        log.warning("events could not be encoded as they are; bad text or values replaced")
        return orjson.dumps(printable_value(batch), default=str)


def decode_event(session_id: str, raw: dict[str, Any]) -> RunEvent:
    return RunEvent(raw["t"], raw["d"], session_id, raw["r"], raw["s"], _EPOCH + timedelta(microseconds=raw["us"]))


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
