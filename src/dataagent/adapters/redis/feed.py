"""Reading a session's stream: the held events for a replay (lua/read.lua), and the feed (XREAD) that hands
events another process numbered to the hub, for the sessions subscribers here watch and this process does not
run."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from dataagent.adapters.redis.client import Link
from dataagent.adapters.redis.codec import decode_entries, decode_event
from dataagent.adapters.redis.outbox import Outbox
from dataagent.application.replay import floor_seq
from dataagent.application.transport import FeedListener, Held
from dataagent.domain.errors import BrokerUnavailableError
from dataagent.domain.events import EventType, RunEvent

CATCH_UP_S = 0.5  # how long a read waits for another process's unflushed events the client says it has seen
CATCH_UP_POLL_S = 0.02
IDLE_POLL_S = 0.05  # how often the feed looks for sessions to read while it has none
BLOCK_MS = 200  # how long one XREAD waits for new entries
RETRY_S = 1.0


def _decode_script_entries(session_id: str, entries: list[Any]) -> list[RunEvent]:
    """Entries as a script returns them: [id, [field, value, ...]]."""
    events: list[RunEvent] = []
    for _, fields in entries:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        events += [decode_event(session_id, raw) for raw in orjson.loads(values[b"e"])]
    return events


class StreamReader:
    def __init__(self, link: Link, outbox: Outbox, seq_ttl_ms: int) -> None:
        self._link = link
        self._outbox = outbox
        self._seq_ttl_ms = seq_ttl_ms
        self._read_script = link.script("read")
        self._last_seq = link.script("last_seq")
        self.listener: FeedListener | None = None

    async def read(self, session_id: str, after_seq: int | None) -> Held:
        """What the stream holds after `after_seq`, read at one instant after this process's own unflushed events
        of the session are written. A client may have seen events on the run's own process that it has not
        flushed yet: while a run is active and `after_seq` lies beyond the stream, it looks again a little."""
        held = await self._read(session_id, after_seq)
        deadline = time.monotonic() + CATCH_UP_S
        while after_seq and held.active_run is not None and after_seq > held.last and time.monotonic() < deadline:
            await asyncio.sleep(CATCH_UP_POLL_S)
            held = await self._read(session_id, after_seq)
        return held

    async def _read(self, session_id: str, after_seq: int | None) -> Held:
        """A batch's entry id is its last seq, so the entries from `after_seq + 1` on hold every held event after
        it (and a trimmed one shows as a gap)."""
        await self._outbox.flush([session_id])
        first = "-" if not after_seq else f"{min(max(after_seq + 1, 0), 2**63 - 1)}-0"  # a stream id is u64
        link = self._link
        entries, run, stored, trimmed = await link.call(self._read_script(
            keys=[link.k("ev", session_id), link.k("seq", session_id), link.k("run", session_id)],
            args=[first, floor_seq(), self._seq_ttl_ms]))
        events = _decode_script_entries(session_id, entries)
        active = run.decode().split("|", 1)[0] if run else None
        last = max(int(stored), events[-1].seq if events else 0)
        if after_seq is None:
            starts = [e.seq for e in events if e.event_type == EventType.RUN_STARTED and e.run_id == active]
            after_seq = starts[-1] - 1 if active is not None and starts else last
            events = [e for e in events if e.seq > after_seq]
        elif after_seq:
            events = [e for e in events if e.seq > after_seq]  # the first batch may start below it
        floor = None if trimmed else (events[0].seq - 1 if events else last)
        return Held(events, after_seq, last, floor if after_seq == 0 else None, active)

    async def last_seq(self, session_id: str) -> int:
        """The last seq written to the session's stream (starting its numbering at the floor if it has none)."""
        link = self._link
        return int(await link.call(self._last_seq(
            keys=[link.k("seq", session_id)], args=[floor_seq(), self._seq_ttl_ms])))

    async def feed_forever(self) -> None:
        """Deliver events of other processes to this process's subscribers (sessions it does not run)."""
        prefix = self._link.k("ev", "x")[:-1]
        while True:
            positions = self.listener.positions() if self.listener is not None else {}
            if not positions:
                await asyncio.sleep(IDLE_POLL_S)
                continue
            streams = {f"{prefix}{sid}": f"{seq}-0" for sid, seq in positions.items()}
            try:
                found = await self._link.call(self._link.redis.xread(streams, count=100, block=BLOCK_MS))
            except BrokerUnavailableError:
                await asyncio.sleep(RETRY_S)
                continue
            for key, entries in found or []:
                session_id = key.decode()[len(prefix):]
                if self.listener is not None:
                    self.listener.deliver(session_id, decode_entries(session_id, entries))
