"""The Redis run broker: several workers and hosts share runs, events, replay and control through Redis.

Keys (prefix `da:`):
- `run:{sid}`    the session's one active run, `run_id|owner` (set by a claim, removed by the owner's
                 release or, if the owner died, by the process that closes the orphan);
- `leases`       a sorted set of `sid|run_id|owner` scored by lease expiry (ms); owners renew it;
- `ckpt:{run}`   the owner's checkpoint of a run (partial text, tool calls) for failover;
- `seq:{sid}`    the session's last issued seq, so a run on another process continues the numbering;
- `ev:{sid}`     a stream of event batches, each entry's id the batch's last seq, trimmed to the last
                 `replay_events` events: the replay buffer, and the feed of remote watchers;
- `watch:{sid}`  the processes watching the session from elsewhere (a sorted set scored by expiry);
- `ctl:{owner}`  the pub/sub channel of one process: cancels and approval decisions for its runs.

Redis stays off the per-token path: events go to local subscribers at once and to the stream in batches.
A session that another process watches is flushed every `flush_interval_s` (10 ms); one nobody else
watches only every `lazy_flush_s` (250 ms), to keep the replay buffer current. Seqs are numbered locally by
the run's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from dataagent.adapters.redis.codec import (
    CLAIM,
    LAST_SEQ,
    RELEASE,
    decode_event,
    encode_event,
    floor_seq,
    replay_from,
)
from dataagent.application.ports import ControlHandler, OrphanHandler, RunControl
from dataagent.application.streams import Subscription
from dataagent.domain.approvals import Decision
from dataagent.domain.errors import BrokerUnavailableError
from dataagent.domain.events import RunEvent

log = logging.getLogger("dataagent.redis")
T = TypeVar("T")

PREFIX = "da:"
OUTBOX_LIMIT = 10_000  # events kept per session while Redis is unreachable
WATCH_TTL_MS = 6000  # a watcher registration lapses this long after the watching process stops refreshing it

@dataclass(slots=True)
class _Channel:
    seq: int = 0                      # the last seq this process issued or delivered for the session
    publishing: bool = False          # this process numbers the session's events now (owns its run)
    subscribers: set[Subscription] = field(default_factory=set)
    stream_id: str = "0-0"            # the last stream entry read for remote watchers
    outbox: list[RunEvent] = field(default_factory=list)
    watched_elsewhere: bool = False   # another process has sockets on this session: flush it promptly
    flushed_at: float = 0.0


class RedisRunBroker:
    def __init__(
        self,
        url: str,
        replay_events: int = 1000,
        replay_ttl_s: float = 600.0,
        lease_s: float = 6.0,
        flush_interval_s: float = 0.01,
        lazy_flush_s: float = 0.25,
    ) -> None:
        # typed Any: redis-py's return types are unions of bytes/str/None that do not follow decode_responses
        self._redis: Any = aioredis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=2, retry_on_timeout=False, health_check_interval=10,
        )
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._replay_events = replay_events
        self._replay_ttl_ms = int(replay_ttl_s * 1000)
        self._lease_ms = int(lease_s * 1000)
        self._flush_interval_s = flush_interval_s
        self._lazy_flush_s = lazy_flush_s
        self._dirty: set[str] = set()  # sessions with unflushed events
        self._channels: dict[str, _Channel] = {}
        self._runs: dict[str, str] = {}  # run_id -> session_id of the runs this process owns
        self._control: ControlHandler | None = None
        self._orphans: OrphanHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_lock = asyncio.Lock()
        self._claim = self._redis.register_script(CLAIM)
        self._release = self._redis.register_script(RELEASE)
        self._last_seq = self._redis.register_script(LAST_SEQ)

    # -- keys ---------------------------------------------------------------------------------------

    @staticmethod
    def _k(kind: str, name: str = "") -> str:
        return f"{PREFIX}{kind}:{name}" if name else f"{PREFIX}{kind}"

    def _member(self, session_id: str, run_id: str, owner: str | None = None) -> str:
        return f"{session_id}|{run_id}|{owner or self.owner}"

    @staticmethod
    async def _call(awaitable: Awaitable[T]) -> T:
        """Await a Redis call; a lost connection becomes BrokerUnavailableError."""
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise BrokerUnavailableError(f"Redis is unreachable ({type(exc).__name__})") from exc

    def _channel(self, session_id: str) -> _Channel:
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = _Channel()
        return channel

    # -- events -------------------------------------------------------------------------------------

    def publish(self, session_id: str, run_id: str | None, event_type: str, data: dict[str, Any]) -> RunEvent:
        channel = self._channels.get(session_id) or self._channel(session_id)
        channel.seq += 1
        event = RunEvent(event_type, data, session_id, run_id, channel.seq, datetime.now(UTC))
        for subscriber in channel.subscribers:
            subscriber.put(event)
        if len(channel.outbox) >= OUTBOX_LIMIT:
            del channel.outbox[: len(channel.outbox) // 10]
            log.warning("session %s: Redis unreachable, oldest unsent events dropped from replay", session_id)
        channel.outbox.append(event)
        self._dirty.add(session_id)
        return event

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            now = time.monotonic()
            due = [sid for sid in self._dirty if self._due(self._channels[sid], now)]
            if not due:
                continue
            try:
                await self._flush(due)
            except BrokerUnavailableError:
                await asyncio.sleep(1.0)

    def _due(self, channel: _Channel, now: float) -> bool:
        return channel.watched_elsewhere or now - channel.flushed_at >= self._lazy_flush_s

    async def _flush(self, sessions: list[str] | None = None) -> None:
        """Write buffered events to their streams (after any flush in flight, so a reader sees all)."""
        async with self._flush_lock:
            await self._flush_now(list(self._dirty) if sessions is None else sessions)

    async def _flush_now(self, sessions: list[str]) -> None:
        now = time.monotonic()
        batches = []
        for sid in sessions:
            channel = self._channels.get(sid)
            self._dirty.discard(sid)
            if channel is not None and channel.outbox:
                batches.append((sid, channel, channel.outbox))
                channel.outbox = []
                channel.flushed_at = now
        if not batches:
            return
        pipe = self._redis.pipeline(transaction=False)
        for sid, _, events in batches:
            payload = orjson.dumps([encode_event(e) for e in events])
            # the entry id is the batch's last seq: trimming by MINID keeps the last `replay_events` events
            last = events[-1].seq
            pipe.xadd(self._k("ev", sid), {"o": self.owner, "e": payload}, id=f"{last}-0",
                      minid=max(0, last - self._replay_events + 1), approximate=False)
            pipe.pexpire(self._k("ev", sid), self._replay_ttl_ms)
        try:
            await self._call(pipe.execute())
        except BrokerUnavailableError:
            for sid, channel, events in batches:  # keep them, in order, for the next try
                channel.outbox = events + channel.outbox
                self._dirty.add(sid)
            raise

    async def _held(self, session_id: str) -> tuple[list[RunEvent], str]:
        entries = await self._call(self._redis.xrange(self._k("ev", session_id)))
        events = [decode_event(session_id, raw) for _, fields in entries for raw in orjson.loads(fields[b"e"])]
        last_id = entries[-1][0].decode() if entries else "0-0"
        return events, last_id

    async def subscribe(self, session_id: str, after_seq: int | None, maxsize: int) -> Subscription:
        channel = self._channel(session_id)
        subscription = Subscription([], True, maxsize, on_close=channel.subscribers.discard)
        channel.subscribers.add(subscription)  # live events queue up while the held ones are read
        try:
            await self._flush([session_id])
            if not channel.publishing:
                await self._register_watch([session_id])
            held, last_id = await self._held(session_id)
            active = await self.active_run(session_id)
            stored = await self._stored_seq(session_id)
        except BaseException:
            subscription.close()
            raise
        if not channel.publishing and channel.stream_id == "0-0":
            channel.stream_id = last_id
            channel.seq = max(channel.seq, stored, held[-1].seq if held else 0)
        subscription.replayed, subscription.recovered = replay_from(held, after_seq, active, channel.seq)
        if subscription.replayed:
            subscription.discard_through(subscription.replayed[-1].seq)
        return subscription

    async def replay(self, session_id: str, after_seq: int) -> tuple[list[RunEvent], bool]:
        await self._flush([session_id])
        held, _ = await self._held(session_id)
        return replay_from(held, after_seq, None, max(self._channel(session_id).seq, held[-1].seq if held else 0))

    async def last_seq(self, session_id: str) -> int:
        channel = self._channel(session_id)
        if channel.publishing or channel.subscribers:
            return channel.seq
        return max(channel.seq, await self._stored_seq(session_id))

    async def _stored_seq(self, session_id: str) -> int:
        value = await self._call(self._last_seq(
            keys=[self._k("seq", session_id)], args=[floor_seq(), self._replay_ttl_ms * 100]))
        return int(value)

    async def _register_watch(self, sessions: list[str]) -> None:
        """Tell the owners of these sessions' runs that this process has sockets on them."""
        expiry = int(time.time() * 1000) + WATCH_TTL_MS
        pipe = self._redis.pipeline(transaction=False)
        for sid in sessions:
            pipe.zadd(self._k("watch", sid), {self.owner: expiry})
            pipe.pexpire(self._k("watch", sid), WATCH_TTL_MS)
        await self._call(pipe.execute())

    async def _watched_elsewhere(self, sessions: list[str]) -> list[bool]:
        """For each session, whether another process registered sockets on it (and is still alive)."""
        now = int(time.time() * 1000)
        pipe = self._redis.pipeline(transaction=False)
        for sid in sessions:
            pipe.zrangebyscore(self._k("watch", sid), now, "+inf")
        found = await self._call(pipe.execute())
        return [any(m.decode() != self.owner for m in members) for members in found]

    async def _refresh_watches_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_TTL_MS / 3000)
            watched = [sid for sid, c in self._channels.items() if c.subscribers]
            with contextlib.suppress(BrokerUnavailableError):
                if watched:
                    await self._register_watch(watched)

    async def _watch_forever(self) -> None:
        """Deliver events of other processes to this process's subscribers (sessions it does not run)."""
        while True:
            streams = {self._k("ev", sid): c.stream_id for sid, c in self._channels.items()
                       if c.subscribers and not c.publishing}
            if not streams:
                await asyncio.sleep(0.05)
                continue
            try:
                found = await self._call(self._redis.xread(streams, count=100, block=200))
            except BrokerUnavailableError:
                await asyncio.sleep(1.0)
                continue
            for key, entries in found or []:
                self._deliver_remote(key.decode().removeprefix(self._k("ev", "")), entries)

    def _deliver_remote(self, session_id: str, entries: list[Any]) -> None:
        channel = self._channels.get(session_id)
        if channel is None:
            return
        for entry_id, fields in entries:
            channel.stream_id = entry_id.decode()
            if fields[b"o"].decode() == self.owner or channel.publishing:
                continue
            for raw in orjson.loads(fields[b"e"]):
                event = decode_event(session_id, raw)
                if event.seq <= channel.seq:
                    continue
                channel.seq = event.seq
                for subscriber in channel.subscribers:
                    subscriber.put(event)

    # -- runs: claims, leases, checkpoints, orphans ---------------------------------------------------

    async def claim_run(self, session_id: str, run_id: str) -> bool:
        expiry = int(time.time() * 1000) + self._lease_ms
        last = await self._call(self._claim(
            keys=[self._k("run", session_id), self._k("leases"), self._k("seq", session_id)],
            args=[f"{run_id}|{self.owner}", self._member(session_id, run_id), expiry, floor_seq()],
        ))
        if int(last) < 0:
            return False
        channel = self._channel(session_id)
        channel.seq = max(channel.seq, int(last))
        channel.publishing = True
        self._runs[run_id] = session_id
        with contextlib.suppress(BrokerUnavailableError):
            channel.watched_elsewhere = (await self._watched_elsewhere([session_id]))[0]
        return True

    async def release_run(self, session_id: str, run_id: str) -> None:
        channel = self._channel(session_id)
        self._runs.pop(run_id, None)
        try:
            await self._flush([session_id])
            await self._call(self._release(
                keys=[self._k("run", session_id), self._k("leases"), self._k("seq", session_id)],
                args=[f"{run_id}|{self.owner}", self._member(session_id, run_id), channel.seq,
                      self._replay_ttl_ms * 100],
            ))
        finally:
            channel.publishing = False
            channel.stream_id = "0-0" if not channel.subscribers else await self._stream_tail(session_id)

    async def _stream_tail(self, session_id: str) -> str:
        try:
            entries = await self._call(self._redis.xrevrange(self._k("ev", session_id), count=1))
        except BrokerUnavailableError:
            return "$"
        return entries[0][0].decode() if entries else "0-0"

    async def active_run(self, session_id: str) -> str | None:
        value = await self._call(self._redis.get(self._k("run", session_id)))
        return value.decode().split("|", 1)[0] if value else None

    @property
    def lease_renew_interval_s(self) -> float | None:
        return self._lease_ms / 3000

    async def renew_runs(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        if not checkpoints:
            return
        expiry = int(time.time() * 1000) + self._lease_ms
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(self._k("leases"), {self._member(sid, rid): expiry for sid, rid in checkpoints}, xx=True)
        for (_, run_id), state in checkpoints.items():
            pipe.set(self._k("ckpt", run_id), orjson.dumps(state), px=self._lease_ms * 10)
        await self._call(pipe.execute())
        sessions = [sid for sid, _ in checkpoints]
        for sid, watched in zip(sessions, await self._watched_elsewhere(sessions), strict=True):
            self._channel(sid).watched_elsewhere = watched

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.get(self._k("ckpt", run_id)))
        return dict(orjson.loads(raw)) if raw else None

    def on_orphan(self, handler: OrphanHandler) -> None:
        self._orphans = handler

    async def _sweep_forever(self) -> None:
        """Find leases nobody renewed in time; the process whose ZREM wins closes that run."""
        while True:
            await asyncio.sleep(self._lease_ms / 6000)
            try:
                now = int(time.time() * 1000)
                expired = await self._call(self._redis.zrangebyscore(
                    self._k("leases"), "-inf", now, start=0, num=20))
                for member in expired:
                    if await self._call(self._redis.zrem(self._k("leases"), member)):
                        await self._close_orphan(*member.decode().split("|", 2))
            except BrokerUnavailableError:
                continue
            except Exception:
                log.exception("closing an orphaned run failed")

    async def _close_orphan(self, session_id: str, run_id: str, owner: str) -> None:
        if owner == self.owner and run_id in self._runs:
            return  # our own run, late in renewing: it is alive
        channel = self._channel(session_id)
        channel.seq = max(channel.seq, await self._stored_seq(session_id))
        channel.publishing = True
        try:
            if self._orphans is not None:
                await self._orphans(session_id, run_id)
        finally:
            await self._call(self._release(
                keys=[self._k("run", session_id), self._k("leases"), self._k("seq", session_id)],
                args=[f"{run_id}|{owner}", self._member(session_id, run_id, owner), channel.seq,
                      self._replay_ttl_ms * 100],
            ))
            await self._flush([session_id])
            channel.publishing = False

    # -- control ------------------------------------------------------------------------------------

    async def send_control(self, control: RunControl) -> None:
        value = await self._call(self._redis.get(self._k("run", control.session_id)))
        if not value:
            return
        run_id, _, owner = value.decode().partition("|")
        if run_id != control.run_id:
            return
        if owner == self.owner:
            if self._control is not None:
                await self._control(control)
            return
        payload = orjson.dumps({
            "kind": control.kind, "session_id": control.session_id, "run_id": control.run_id,
            "reason": control.reason, "interrupt_id": control.interrupt_id,
            "decision": control.decision.as_dict() if control.decision else None,
        })
        await self._call(self._redis.publish(self._k("ctl", owner), payload))

    def on_control(self, handler: ControlHandler) -> None:
        self._control = handler

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._k("ctl", self.owner))
                    async for message in pubsub.listen():
                        await self._on_message(message)
            except (RedisError, OSError):
                await asyncio.sleep(1.0)

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message" or self._control is None:
            return
        raw = orjson.loads(message["data"])
        decision = Decision.from_dict(raw["decision"]) if raw.get("decision") else None
        await self._control(RunControl(
            raw["kind"], raw["session_id"], raw["run_id"], raw.get("reason") or "user", raw.get("interrupt_id"),
            decision,
        ))

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ping()
        for work in (self._flush_forever, self._watch_forever, self._refresh_watches_forever, self._sweep_forever,
                     self._listen_forever):
            self._tasks.append(asyncio.create_task(work(), name=f"redis-broker:{work.__name__}"))

    async def close(self) -> None:
        with contextlib.suppress(BrokerUnavailableError):
            await self._flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self._redis.aclose()

    async def ping(self) -> None:
        await self._call(self._redis.ping())
