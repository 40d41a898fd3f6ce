"""The Redis run broker: several workers and hosts share runs, events, replay and control through Redis.

Keys (prefix `da:` by default, DATAAGENT_REDIS_PREFIX):
- `run:{sid}`    the session's one active run, `run_id|owner` (set by a claim, removed by the owner's
                 release or, if the owner died, by the process that closes the orphan);
- `leases`       a sorted set of `sid|run_id|owner` scored by lease expiry (ms); owners renew it;
- `ckpt:{run}`   the owner's checkpoint of a run (partial text, tool calls) for failover;
- `seq:{sid}`    the session's last seq written to its stream, so a run on another process numbers on;
- `ev:{sid}`     a stream of event batches, each entry's id the batch's last seq, trimmed to the last
                 `replay_events` events: the replay buffer, and the feed of remote watchers;
- `watch:{sid}`  the processes watching the session from elsewhere (a sorted set scored by expiry);
- `ctl:{owner}`  the pub/sub channel of one process: cancels and approval decisions for its runs (and word
                 that another process now watches one of its sessions).
- `ctl`          the pub/sub channel of every process: a session was deleted or expired (drop its sockets).

Redis stays off the per-token path: events go to local subscribers at once and to the stream in batches
(one script call per session per flush). A session that another process watches is flushed every
`flush_interval_s` (10 ms); one nobody else watches only every `lazy_flush_s` (250 ms), which keeps its replay
buffer current. Seqs are numbered locally by the run's owner. A process reads a session's stream (XREAD) only
while it has subscribers of that session and does not run it itself.
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
from functools import partial
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dataagent.adapters.redis.codec import (
    CLAIM,
    DROP,
    FLUSH,
    LAST_SEQ,
    RENEW,
    decode_event,
    encode_events,
    floor_seq,
    replay_from,
)
from dataagent.application.ports import ControlHandler, FinalEvent, OrphanHandler, RunControl
from dataagent.application.streams import Subscription
from dataagent.domain.approvals import Decision
from dataagent.domain.errors import BrokerUnavailableError, SessionNotFoundError
from dataagent.domain.events import RunEvent

log = logging.getLogger("dataagent.redis")
T = TypeVar("T")

PREFIX = "da:"
OUTBOX_LIMIT = 10_000  # events kept per session while Redis is unreachable
CATCH_UP_S = 0.5  # how long a subscriber waits for another process's unflushed events it says it has seen
POOL_WAIT_S = 5.0  # how long a call waits for a free connection of the pool before it counts as a failure
RETRY_S = 1.0  # pause of the background loops after Redis failed
WATCH_TTL_MS = 6000  # a watcher registration lapses this long after the watching process stops refreshing it


@dataclass(slots=True)
class _Channel:
    seq: int = 0                      # the last seq this process issued or delivered for the session
    publishing: bool = False          # this process numbers the session's events now (runs it, or closes it)
    synced: bool = False              # `seq` is this process's place in the stream: the watcher reads after it
    subscribers: set[Subscription] = field(default_factory=set)
    outbox: list[RunEvent] = field(default_factory=list)
    release: tuple[str, str, str] | None = None  # (claim value, lease member, run id) to release with the flush
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
        prefix: str = PREFIX,
        max_connections: int = 100,
    ) -> None:
        self._prefix = prefix
        # A burst (hundreds of sockets opening or asking at once) waits for one of `max_connections` rather
        # than failing: redis-py's default pool raises MaxConnectionsError at once when they are all busy.
        # Few, quick retries: a dropped connection is retried, an outage fails fast (503, not a hung request).
        retry = Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2)
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=POOL_WAIT_S,
            socket_timeout=5, socket_connect_timeout=2, health_check_interval=10, retry=retry,
        )
        # typed Any: redis-py's return types are unions of bytes/str/None that do not follow decode_responses.
        self._redis: Any = aioredis.Redis(connection_pool=pool, retry=retry)
        where = self._redis.connection_pool.connection_kwargs
        self.where = f"{where.get('host', where.get('path', '?'))}:{where.get('port', '')}/{where.get('db', 0)}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._replay_events = replay_events
        self._replay_ttl_ms = int(replay_ttl_s * 1000)
        self._seq_ttl_ms = self._replay_ttl_ms * 100
        self._lease_ms = int(lease_s * 1000)
        self._flush_interval_s = flush_interval_s
        self._lazy_flush_s = lazy_flush_s
        self._dirty: set[str] = set()  # sessions with unflushed events or an unwritten release
        self._channels: dict[str, _Channel] = {}
        self._runs: dict[str, str] = {}  # run_id -> session_id of the runs this process owns
        self._control: ControlHandler | None = None
        self._orphans: OrphanHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_lock = asyncio.Lock()
        self._connected_since: float | None = None  # monotonic time since which Redis calls succeed
        self._claim = self._redis.register_script(CLAIM)
        self._flush_script = self._redis.register_script(FLUSH)
        self._renew = self._redis.register_script(RENEW)
        self._last_seq = self._redis.register_script(LAST_SEQ)
        self._drop = self._redis.register_script(DROP)

    # -- keys ---------------------------------------------------------------------------------------

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}:{name}" if name else f"{self._prefix}{kind}"

    def _member(self, session_id: str, run_id: str, owner: str | None = None) -> str:
        return f"{session_id}|{run_id}|{owner or self.owner}"

    async def _call(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call; a lost connection becomes BrokerUnavailableError."""
        try:
            result = await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self._connected_since = None
            raise BrokerUnavailableError(
                f"cannot use Redis at {self.where}: unreachable ({type(exc).__name__})") from exc
        except RedisError as exc:
            raise BrokerUnavailableError(
                f"cannot use Redis at {self.where}: a command failed ({type(exc).__name__})") from exc
        if self._connected_since is None:
            self._connected_since = time.monotonic()
        return result

    def _channel(self, session_id: str) -> _Channel:
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = _Channel()
        return channel

    # -- events -------------------------------------------------------------------------------------

    def publish(self, session_id: str, run_id: str | None, event_type: str, data: dict[str, Any]) -> RunEvent:
        channel = self._channels.get(session_id) or self._channel(session_id)
        event = self._number(session_id, channel, run_id, event_type, data)
        for subscriber in channel.subscribers:
            subscriber.put(event)
        return event

    def _number(
        self, session_id: str, channel: _Channel, run_id: str | None, event_type: str, data: dict[str, Any]
    ) -> RunEvent:
        """Give the event the session's next seq and queue it for the stream (not yet to subscribers)."""
        channel.seq += 1
        event = RunEvent(event_type, data, session_id, run_id, channel.seq, datetime.now(UTC))
        if len(channel.outbox) >= OUTBOX_LIMIT:
            del channel.outbox[: len(channel.outbox) // 10]
            log.warning("session %s: Redis unreachable, oldest unsent events dropped from replay", session_id)
        channel.outbox.append(event)
        self._dirty.add(session_id)
        return event

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)  # let a batch gather
            now = time.monotonic()
            due = [sid for sid in self._dirty if self._due(sid, now)]
            if not due:
                continue
            try:
                await self._flush(due)
            except BrokerUnavailableError:
                await asyncio.sleep(RETRY_S)
            except Exception:
                log.exception("writing events to Redis failed")
                await asyncio.sleep(RETRY_S)

    def _due(self, session_id: str, now: float) -> bool:
        channel = self._channels.get(session_id)
        return channel is None or channel.watched_elsewhere or channel.release is not None or (
            now - channel.flushed_at >= self._lazy_flush_s)

    async def _flush(self, sessions: list[str] | None = None) -> None:
        """Write buffered events (and pending releases) of these sessions (None: all) to Redis, after any flush
        in flight: in seq order."""
        async with self._flush_lock:
            await self._flush_now(list(self._dirty) if sessions is None else sessions)

    async def _flush_now(self, sessions: list[str], retry: bool = True) -> None:
        now = time.monotonic()
        work: list[tuple[str, _Channel]] = []
        for sid in sessions:
            self._dirty.discard(sid)
            channel = self._channels.get(sid)
            if channel is not None and (channel.outbox or channel.release):
                work.append((sid, channel))
        if not work:
            return
        taken: list[tuple[str, _Channel, list[RunEvent], tuple[str, str, str] | None]] = []
        pipe = self._redis.pipeline(transaction=False)
        for sid, channel in work:
            channel.flushed_at = now
            events, channel.outbox = channel.outbox, []
            release = channel.release
            last = events[-1].seq if events else channel.seq
            keys = [self._k("ev", sid), self._k("seq", sid)]
            args: list[Any] = [
                self.owner, encode_events(events) if events else "", f"{last}-0",
                max(0, last - self._replay_events + 1), self._replay_ttl_ms, self._seq_ttl_ms, last,
            ]
            if release is not None:
                value, member, run_id = release
                keys += [self._k("run", sid), self._k("leases"), self._k("ckpt", run_id)]
                args += [value, member, self._lease_ms * 10]
            # EVALSHA straight on the pipeline: a registered Script would add a SCRIPT EXISTS round trip per flush
            pipe.evalsha(self._flush_script.sha, len(keys), *keys, *args)
            taken.append((sid, channel, events, release))
        try:
            results = await self._call(pipe.execute(raise_on_error=False))
        except BrokerUnavailableError:
            self._put_back(taken)  # in order, for the next try
            raise
        if any(isinstance(result, NoScriptError) for result in results):  # Redis restarted: nothing ran
            self._put_back(taken)
            self._flush_script.sha = await self._call(self._redis.script_load(FLUSH))
            if not retry:
                raise BrokerUnavailableError("Redis refused the flush script")
            return await self._flush_now(sessions, retry=False)
        for (sid, channel, events, release), result in zip(taken, results, strict=True):
            if isinstance(result, Exception):
                log.error("session %s: Redis refused a batch of %d events: %s", sid, len(events), result)
                continue  # a refused script would be refused again: the events stay local; a release is retried
            if release is not None and channel.release is release:
                channel.release = None
            if not result:
                log.warning("session %s: %d events came after the stream had moved past them; not held for replay",
                            sid, len(events))

    def _put_back(self, taken: list[tuple[str, _Channel, list[RunEvent], Any]]) -> None:
        for sid, channel, events, _ in taken:
            channel.outbox = events + channel.outbox
            self._dirty.add(sid)

    async def _snapshot(
        self, session_id: str, after_seq: int | None = None
    ) -> tuple[list[RunEvent], str | None, int]:
        """The held events (those after `after_seq`, if given), the active run and the last written seq, read at
        one instant. A batch's entry id is its last seq, so the entries from `after_seq + 1` on hold every held
        event after it (and a trimmed one shows as a gap)."""
        pipe = self._redis.pipeline(transaction=True)
        first = "-" if after_seq is None else f"{min(max(after_seq + 1, 0), 2**63)}-0"  # a stream id is u64
        pipe.xrange(self._k("ev", session_id), min=first)
        pipe.get(self._k("run", session_id))
        await self._last_seq(keys=[self._k("seq", session_id)], args=[floor_seq(), self._seq_ttl_ms], client=pipe)
        entries, run, stored = await self._call(pipe.execute())
        events = [decode_event(session_id, raw) for _, fields in entries for raw in orjson.loads(fields[b"e"])]
        return events, run.decode().split("|", 1)[0] if run else None, int(stored)

    async def subscribe(self, session_id: str, after_seq: int | None, maxsize: int) -> Subscription:
        channel = self._channel(session_id)
        subscription = Subscription([], True, maxsize, on_close=partial(self._unsubscribe, session_id))
        channel.subscribers.add(subscription)  # live events queue up while the held ones are read
        try:
            await self._flush([session_id])
            if not channel.publishing:
                await self._register_watch([session_id])
            held, active, stored = await self._snapshot(session_id, after_seq)
            if active is not None and not channel.publishing:
                await self._tell_owner_watched(session_id)
            if after_seq is not None and active is not None and not channel.publishing:
                # the client may have seen events on the run's own process that it has not flushed yet
                deadline = time.monotonic() + CATCH_UP_S
                while after_seq > max(stored, held[-1].seq if held else 0) and time.monotonic() < deadline:
                    await asyncio.sleep(self._flush_interval_s * 2)
                    held, active, stored = await self._snapshot(session_id, after_seq)
        except BaseException:
            subscription.close()
            raise
        known = max(stored, held[-1].seq if held else 0)
        if not channel.publishing and not channel.synced:
            channel.seq = max(channel.seq, known)  # the watcher delivers what comes after
            channel.synced = True
        subscription.replayed, subscription.recovered = replay_from(
            held, after_seq, active, max(channel.seq, known))
        floor = max(after_seq or 0, subscription.replayed[-1].seq if subscription.replayed else 0)
        if floor:
            subscription.discard_through(floor)
        return subscription

    def _unsubscribe(self, session_id: str, subscription: Subscription) -> None:
        channel = self._channels.get(session_id)
        if channel is None:
            return
        channel.subscribers.discard(subscription)
        if not channel.subscribers:
            channel.synced = False  # nobody watches: the next subscriber finds its place again

    async def replay(self, session_id: str, after_seq: int) -> tuple[list[RunEvent], bool]:
        await self._flush([session_id])
        held, _, stored = await self._snapshot(session_id, after_seq)
        known = max(self._channel(session_id).seq, stored, held[-1].seq if held else 0)
        return replay_from(held, after_seq, None, known)

    async def last_seq(self, session_id: str) -> int:
        channel = self._channels.get(session_id)
        if channel is not None and (channel.publishing or channel.synced):
            return channel.seq
        return max(channel.seq if channel else 0, await self._stored_seq(session_id))

    async def _stored_seq(self, session_id: str) -> int:
        """The last seq written to the session's stream (starting its numbering at the floor if it has none)."""
        return int(await self._call(self._last_seq(
            keys=[self._k("seq", session_id)], args=[floor_seq(), self._seq_ttl_ms])))

    async def _register_watch(self, sessions: list[str]) -> None:
        """Record that this process has sockets on these sessions (owners flush them promptly)."""
        expiry = int(time.time() * 1000) + WATCH_TTL_MS
        pipe = self._redis.pipeline(transaction=False)
        for sid in sessions:
            pipe.zadd(self._k("watch", sid), {self.owner: expiry})
            pipe.pexpire(self._k("watch", sid), WATCH_TTL_MS)
        await self._call(pipe.execute())

    async def _tell_owner_watched(self, session_id: str) -> None:
        """A socket here joins a session another process runs: tell that owner now, not at its next renewal."""
        value = await self._call(self._redis.get(self._k("run", session_id)))
        owner = value.decode().partition("|")[2] if value else ""
        if owner and owner != self.owner:
            payload = orjson.dumps({"kind": "watch", "session_id": session_id})
            await self._call(self._redis.publish(self._k("ctl", owner), payload))

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
        prefix = self._k("ev", "x")[:-1]
        while True:
            streams = {f"{prefix}{sid}": f"{c.seq}-0" for sid, c in self._channels.items()
                       if c.subscribers and c.synced and not c.publishing}
            if not streams:
                await asyncio.sleep(0.05)
                continue
            try:
                found = await self._call(self._redis.xread(streams, count=100, block=200))
            except BrokerUnavailableError:
                await asyncio.sleep(RETRY_S)
                continue
            for key, entries in found or []:
                self._deliver_remote(key.decode()[len(prefix):], entries)

    def _deliver_remote(self, session_id: str, entries: list[Any]) -> None:
        """Hand stream entries to local subscribers: each event once, in order, none a subscriber already had."""
        channel = self._channels.get(session_id)
        if channel is None or channel.publishing or not channel.synced:
            return
        for _, fields in entries:
            for raw in orjson.loads(fields[b"e"]):
                event = decode_event(session_id, raw)
                if event.seq <= channel.seq:
                    continue
                channel.seq = event.seq
                for subscriber in channel.subscribers:
                    if event.seq > subscriber.floor:
                        subscriber.put(event)

    async def _catch_up(self, session_id: str, channel: _Channel) -> None:
        """Deliver to local watchers what is in the stream after their place (before this process numbers)."""
        if not channel.synced or not channel.subscribers or channel.publishing:
            return
        with contextlib.suppress(BrokerUnavailableError):
            entries = await self._call(self._redis.xrange(self._k("ev", session_id), min=f"{channel.seq + 1}-0"))
            self._deliver_remote(session_id, entries)

    # -- runs: claims, leases, checkpoints, orphans ---------------------------------------------------

    async def claim_run(self, session_id: str, run_id: str) -> bool:
        expiry = int(time.time() * 1000) + self._lease_ms
        last = int(await self._call(self._claim(
            keys=[self._k("run", session_id), self._k("leases"), self._k("seq", session_id)],
            args=[f"{run_id}|{self.owner}", self._member(session_id, run_id), expiry, floor_seq()],
        )))
        if last < 0:
            return False
        channel = self._channel(session_id)
        if channel.seq < last:
            await self._catch_up(session_id, channel)  # the previous run's end, to sockets here that watch it
        channel.seq = max(channel.seq, last)
        channel.publishing = True
        self._runs[run_id] = session_id
        with contextlib.suppress(BrokerUnavailableError):
            channel.watched_elsewhere = (await self._watched_elsewhere([session_id]))[0]
        return True

    async def release_run(self, session_id: str, run_id: str, final: FinalEvent | None = None) -> None:
        self._runs.pop(run_id, None)
        await self._end(session_id, f"{run_id}|{self.owner}", self._member(session_id, run_id), run_id, final)

    async def _end(self, session_id: str, value: str, member: str, run_id: str, final: FinalEvent | None) -> None:
        """Release the claim `value` together with the session's last events, then publish `final` here."""
        channel = self._channel(session_id)
        event = self._number(session_id, channel, run_id, *final) if final is not None else None
        channel.release = (value, member, run_id)
        try:
            await self._flush([session_id])
        except BrokerUnavailableError:
            log.warning("session %s: Redis unreachable; run %s is released when it is back", session_id, run_id)
        finally:
            channel.publishing = False
            channel.synced = bool(channel.subscribers)
            if event is not None:
                for subscriber in channel.subscribers:
                    subscriber.put(event)

    async def active_run(self, session_id: str) -> str | None:
        value = await self._call(self._redis.get(self._k("run", session_id)))
        return value.decode().split("|", 1)[0] if value else None

    async def drop_session(self, session_id: str) -> None:
        keys = [self._k("ev", session_id), self._k("seq", session_id), self._k("watch", session_id)]
        base = int(await self._call(self._drop(keys=keys, args=[floor_seq(), self._seq_ttl_ms])))
        self._drop_local(session_id, base)
        payload = orjson.dumps({"kind": "drop", "session_id": session_id, "seq": base})
        await self._call(self._redis.publish(self._k("ctl"), payload))  # every process, this one included

    def _drop_local(self, session_id: str, base: int) -> None:
        """Fail this process's subscribers of a dropped session and forget its state; a channel already past
        `base` belongs to the id's next life (its stale sockets are caught by their ownership check)."""
        channel = self._channels.get(session_id)
        if channel is None or channel.seq >= base:
            return
        for subscriber in list(channel.subscribers):
            subscriber.fail(SessionNotFoundError())
        if not channel.publishing and channel.release is None:
            del self._channels[session_id]
            self._dirty.discard(session_id)

    @property
    def lease_renew_interval_s(self) -> float | None:
        return self._lease_ms / 3000

    async def renew_runs(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        if not checkpoints:
            return
        # what a checkpoint holds was published before it was taken: once flushed, the stream has all of it,
        # so the text another process persists if this one dies is never more than what watchers were sent
        await self._flush()
        expiry = int(time.time() * 1000) + self._lease_ms
        pipe = self._redis.pipeline(transaction=False)
        for (sid, run_id), state in checkpoints.items():
            await self._renew(
                keys=[self._k("run", sid), self._k("leases"), self._k("ckpt", run_id)],
                args=[f"{run_id}|{self.owner}", self._member(sid, run_id), expiry, orjson.dumps(state),
                      self._lease_ms * 10],
                client=pipe,
            )
        results = await self._call(pipe.execute())
        for (sid, run_id), kept in zip(checkpoints, results, strict=True):
            if not kept and run_id in self._runs:
                log.error("run %s of session %s was closed by another process while this one could not reach "
                          "Redis; it goes on here", run_id, sid)
        sessions = [sid for sid, _ in checkpoints]
        for sid, watched in zip(sessions, await self._watched_elsewhere(sessions), strict=True):
            if sid in self._channels:
                self._channels[sid].watched_elsewhere = watched

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        raw = await self._call(self._redis.get(self._k("ckpt", run_id)))
        state = orjson.loads(raw) if raw else None
        return dict(state) if isinstance(state, dict) else None

    def on_orphan(self, handler: OrphanHandler) -> None:
        self._orphans = handler

    async def _sweep_forever(self) -> None:
        """Find leases nobody renewed in time; the process whose ZREM wins closes that run."""
        while True:
            await asyncio.sleep(self._lease_ms / 6000)
            try:
                await self._forget_idle()
                await self._sweep()
            except BrokerUnavailableError:
                continue
            except Exception:
                log.exception("closing an orphaned run failed")

    async def _sweep(self) -> None:
        now = int(time.time() * 1000)
        expired = await self._call(self._redis.zrangebyscore(self._k("leases"), "-inf", now, start=0, num=20))
        since = self._connected_since
        if since is None or time.monotonic() - since < self._lease_ms / 1000:
            return  # just (re)connected: live owners, cut off like this process, have not renewed yet
        for member in expired:
            session_id, run_id, owner = member.decode().split("|", 2)
            if owner == self.owner and run_id in self._runs:
                continue  # our own run, late in renewing: it is alive, and the next renewal pushes its lease
            if await self._call(self._redis.zrem(self._k("leases"), member)):
                await self._close_orphan(session_id, run_id, owner)

    async def _close_orphan(self, session_id: str, run_id: str, owner: str) -> None:
        channel = self._channel(session_id)
        # number on above anything the dead owner may have issued, flushed or not (see floor_seq)
        base = max(await self._stored_seq(session_id), floor_seq())
        await self._catch_up(session_id, channel)
        channel.seq = max(channel.seq, base)
        channel.publishing = True
        member = self._member(session_id, run_id, owner)
        try:
            final = await self._orphans(session_id, run_id) if self._orphans is not None else None
        except BaseException:
            channel.publishing = False
            with contextlib.suppress(BrokerUnavailableError):  # try again later; the claim stays meanwhile
                expiry = int(time.time() * 1000) + self._lease_ms
                await self._call(self._redis.zadd(self._k("leases"), {member: expiry}))
            raise
        await self._end(session_id, f"{run_id}|{owner}", member, run_id, final)

    async def _forget_idle(self) -> None:
        """Drop the state of sessions this process neither runs nor watches nor owes a write."""
        async with self._flush_lock:
            idle = [sid for sid, c in self._channels.items()
                    if not c.subscribers and not c.publishing and not c.outbox and c.release is None]
            for sid in idle:
                del self._channels[sid]

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
                    await pubsub.subscribe(self._k("ctl", self.owner), self._k("ctl"))  # its own; everyone's
                    async for message in pubsub.listen():
                        try:
                            await self._on_message(message)
                        except Exception:
                            log.exception("a control message could not be handled")
            except (RedisError, OSError):
                await asyncio.sleep(RETRY_S)

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        raw = orjson.loads(message["data"])
        if raw.get("kind") == "drop":
            self._drop_local(raw["session_id"], int(raw["seq"]))
            return
        if raw.get("kind") == "watch":
            channel = self._channels.get(raw["session_id"])
            if channel is not None:
                channel.watched_elsewhere = True
            return
        if self._control is None:
            return
        decision = Decision.from_dict(raw["decision"]) if raw.get("decision") else None
        await self._control(RunControl(
            raw["kind"], raw["session_id"], raw["run_id"], raw.get("reason") or "user", raw.get("interrupt_id"),
            decision,
        ))

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.ping()
        self._flush_script.sha = await self._call(self._redis.script_load(FLUSH))
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
        await self._redis.connection_pool.disconnect()  # a pool handed to the client is not closed with it

    async def ping(self) -> None:
        await self._call(self._redis.ping())
