"""The outbox: events numbered here go to local subscribers at once (the hub) and to Redis in batches.

One script call (lua/flush.lua) per session per flush. A session that another process watches is flushed every
`flush_interval_s` (10 ms); one nobody else watches only every `lazy_flush_s` (250 ms), which keeps its replay
buffer current. A run's release is written with its session's last batch, in the same script call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError

from dataagent.adapters.redis.client import Link, load_lua
from dataagent.adapters.redis.codec import encode_events
from dataagent.domain.errors import BrokerUnavailableError
from dataagent.domain.events import RunEvent

log = logging.getLogger("dataagent.redis")

OUTBOX_LIMIT = 10_000  # events kept per session while Redis is unreachable
RETRY_S = 1.0  # pause of the flush loop after Redis failed

Release = tuple[str, str, str]  # (claim value, lease member, run id) to release with the session's next flush


@dataclass(slots=True)
class _Out:
    events: list[RunEvent] = field(default_factory=list)
    release: Release | None = None
    watched_elsewhere: bool = False   # another process has sockets on this session: flush it promptly
    flushed_at: float = 0.0


class Outbox:
    def __init__(
        self, link: Link, replay_events: int, replay_ttl_ms: int, seq_ttl_ms: int, ckpt_ttl_ms: int,
        flush_interval_s: float = 0.01, lazy_flush_s: float = 0.25,
    ) -> None:
        self._link = link
        self._replay_events = replay_events
        self._replay_ttl_ms, self._seq_ttl_ms, self._ckpt_ttl_ms = replay_ttl_ms, seq_ttl_ms, ckpt_ttl_ms
        self.flush_interval_s = flush_interval_s
        self._lazy_flush_s = lazy_flush_s
        self._outs: dict[str, _Out] = {}
        self._dirty: set[str] = set()  # sessions with unflushed events or an unwritten release
        self._lock = asyncio.Lock()
        self._lua = load_lua("flush")
        self.sha = ""

    async def load(self) -> None:
        self.sha = await self._link.call(self._link.redis.script_load(self._lua))

    def append(self, event: RunEvent) -> None:
        out = self._outs.get(event.session_id)
        if out is None:
            out = self._outs[event.session_id] = _Out()
        if len(out.events) >= OUTBOX_LIMIT:
            del out.events[: len(out.events) // 10]
            log.warning("session %s: Redis unreachable, oldest unsent events dropped from replay", event.session_id)
        out.events.append(event)
        self._dirty.add(event.session_id)

    def last(self, session_id: str) -> int:
        """The seq of the session's last event waiting here (0: none)."""
        out = self._outs.get(session_id)
        return out.events[-1].seq if out is not None and out.events else 0

    def queue_release(self, session_id: str, release: Release) -> None:
        out = self._outs.get(session_id)
        if out is None:
            out = self._outs[session_id] = _Out()
        out.release = release
        self._dirty.add(session_id)

    def set_watched(self, session_id: str, watched: bool) -> None:
        out = self._outs.get(session_id)
        if out is None:
            out = self._outs[session_id] = _Out()
        out.watched_elsewhere = watched

    def forget(self, session_id: str) -> bool:
        out = self._outs.get(session_id)
        if out is not None and (out.events or out.release is not None):
            return False
        self._outs.pop(session_id, None)
        self._dirty.discard(session_id)
        return True

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)  # let a batch gather
            now = time.monotonic()
            due = [sid for sid in self._dirty if self._due(sid, now)]
            if not due:
                continue
            try:
                await self.flush(due)
            except BrokerUnavailableError:
                await asyncio.sleep(RETRY_S)
            except Exception:
                log.exception("writing events to Redis failed")
                await asyncio.sleep(RETRY_S)

    def _due(self, session_id: str, now: float) -> bool:
        out = self._outs.get(session_id)
        return out is None or out.watched_elsewhere or out.release is not None or (
            now - out.flushed_at >= self._lazy_flush_s)

    async def flush(self, sessions: list[str] | None = None) -> None:
        """Write buffered events (and pending releases) of these sessions (None: all) to Redis, after any flush
        in flight: in seq order."""
        async with self._lock:
            await self._flush_now(list(self._dirty) if sessions is None else sessions)

    async def _flush_now(self, sessions: list[str], retry: bool = True) -> None:
        now = time.monotonic()
        work: list[tuple[str, _Out]] = []
        for sid in sessions:
            self._dirty.discard(sid)
            out = self._outs.get(sid)
            if out is not None and (out.events or out.release):
                work.append((sid, out))
        if not work:
            return
        taken: list[tuple[str, _Out, list[RunEvent], Release | None]] = []
        link = self._link
        pipe = link.redis.pipeline(transaction=False)
        for sid, out in work:
            out.flushed_at = now
            events, out.events = out.events, []
            release = out.release
            last = events[-1].seq if events else 0
            keys = [link.k("ev", sid), link.k("seq", sid)]
            args: list[Any] = [
                link.owner, encode_events(events) if events else "", f"{last}-0",
                max(0, last - self._replay_events + 1), self._replay_ttl_ms, self._seq_ttl_ms, last,
            ]
            if release is not None:
                value, member, run_id = release
                keys += [link.k("run", sid), link.k("leases"), link.k("ckpt", run_id)]
                args += [value, member, self._ckpt_ttl_ms]
            # EVALSHA straight on the pipeline: a registered Script would add a SCRIPT EXISTS round trip per flush
            pipe.evalsha(self.sha, len(keys), *keys, *args)
            taken.append((sid, out, events, release))
        try:
            results = await link.call(pipe.execute(raise_on_error=False))
        except BrokerUnavailableError:
            self._put_back(taken)  # in order, for the next try
            raise
        if any(isinstance(result, NoScriptError) for result in results):  # Redis restarted: nothing ran
            self._put_back(taken)
            await self.load()
            if not retry:
                raise BrokerUnavailableError("Redis refused the flush script")
            return await self._flush_now(sessions, retry=False)
        for (sid, out, events, release), result in zip(taken, results, strict=True):
            if isinstance(result, Exception):
                log.error("session %s: Redis refused a batch of %d events: %s", sid, len(events), result)
                continue  # a refused script would be refused again: the events stay local; a release is retried
            if release is not None and out.release is release:
                out.release = None
            if not result:
                log.warning("session %s: %d events came after the stream had moved past them; not held for replay",
                            sid, len(events))

    def _put_back(self, taken: list[tuple[str, _Out, list[RunEvent], Release | None]]) -> None:
        for sid, out, events, _ in taken:
            out.events = events + out.events
            self._dirty.add(sid)
