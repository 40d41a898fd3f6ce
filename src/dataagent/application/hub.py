"""The event hub: numbers a session's events, replays them, fans them out and holds the seq floor, once for
every transport. Under it (application/ports.py): an EventLog and RunClaims, and for a transport shared by
several processes a SharedTransport (leases, a feed of events numbered elsewhere); the in-process one has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from dataagent.application.replay import floor_seq, replay_rule
from dataagent.application.streams import Subscription
from dataagent.application.transport import (
    ControlHandler,
    EventLog,
    FinalEvent,
    Held,
    OrphanHandler,
    RunClaims,
    RunControl,
    SharedTransport,
)
from dataagent.domain.errors import BrokerUnavailableError, SessionNotFoundError
from dataagent.domain.events import RunEvent

log = logging.getLogger("dataagent.hub")


@dataclass(slots=True)
class _Channel:
    seq: int                          # the last seq this process issued or delivered for the session
    hold: Callable[[RunEvent], None]  # the log's holder of the session's events
    subscribers: set[Subscription] = field(default_factory=set)
    publishing: bool = False          # this process numbers the session's events now (runs it, or closes it)
    synced: bool = False              # `seq` is this process's place in a shared log: the feed reads after it
    swept_seq: int = 0                # `seq` at the sweep that saw it last,
    idle_since: float = 0.0           # and since when (monotonic)


class EventHub:
    """A session's events, numbered here, delivered to subscribers at once and held by the log for replay. A
    channel nobody subscribes to, with no run, is forgotten once idle `idle_s` (checked every `sweep_s`)."""

    def __init__(self, log: EventLog, claims: RunClaims, shared: SharedTransport | None = None,
                 idle_s: float = 600.0, sweep_s: float = 30.0) -> None:
        self._log, self._claims, self._leases = log, claims, shared
        self._feed = self._shared = shared
        self._idle_s, self._sweep_s = idle_s, sweep_s
        self._channels: dict[str, _Channel] = {}
        self._orphans: OrphanHandler | None = None
        self._after_orphan: Callable[[str], None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        if shared is not None:
            shared.attach(self)
            shared.on_expired(self._close_orphan)

    def _channel(self, session_id: str) -> _Channel:
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = _Channel(
                self._log.known_last(session_id), self._log.holder(session_id))
        return channel

    # -- events -------------------------------------------------------------------------------------

    def publish(self, session_id: str, run_id: str | None, event_type: str, data: dict[str, Any]) -> RunEvent:
        """Give the event the session's next seq, hold it for replay and deliver it to subscribers."""
        channel = self._channels.get(session_id) or self._channel(session_id)
        seq = channel.seq = channel.seq + 1
        event = RunEvent(event_type, data, session_id, run_id, seq, datetime.now(UTC))
        channel.hold(event)
        for subscriber in channel.subscribers:  # put() never changes the set synchronously
            subscriber.put(event)
        return event

    def issued(self, session_id: str) -> int:
        """The last seq this process issued or delivered for the session (0 if it knows none), read now."""
        channel = self._channels.get(session_id)
        return channel.seq if channel is not None else 0

    async def subscribe(self, session_id: str, after_seq: int | None, maxsize: int) -> Subscription:
        """Held events after `after_seq` (None: from the active run's start; 0: all held), then live ones."""
        channel = self._channel(session_id)
        subscription = Subscription([], True, maxsize, on_close=partial(self._unsubscribe, session_id))
        channel.subscribers.add(subscription)  # live events queue up while the held ones are read
        try:
            if self._feed is not None and not channel.publishing:
                await self._feed.watch(session_id)
            held = await self._log.read(session_id, after_seq)
        except BaseException:
            subscription.close()
            raise
        if self._feed is not None and not channel.publishing and not channel.synced:
            channel.seq = max(channel.seq, held.last)  # the feed delivers what comes after
            channel.synced = True
        subscription.replayed, subscription.recovered = self._rule(channel, held)
        floor = max(held.after_seq, subscription.replayed[-1].seq if subscription.replayed else 0)
        if floor:
            subscription.discard_through(floor)
        return subscription

    @staticmethod
    def _rule(channel: _Channel, held: Held) -> tuple[list[RunEvent], bool]:  # what the log has, or what we issued
        return replay_rule(held.events, held.after_seq, max(channel.seq, held.last), held.floor)

    def _unsubscribe(self, session_id: str, subscription: Subscription) -> None:
        channel = self._channels.get(session_id)
        if channel is None:
            return
        channel.subscribers.discard(subscription)
        if not channel.subscribers:
            channel.synced = False  # nobody watches: the next subscriber finds its place again

    async def replay(self, session_id: str, after_seq: int) -> tuple[list[RunEvent], bool]:
        """The held events after `after_seq` and True; or no events and False if some are gone (a gap)."""
        channel = self._channel(session_id)
        return self._rule(channel, await self._log.read(session_id, after_seq))

    async def last_seq(self, session_id: str) -> int:  # the seq of the session's latest event
        channel = self._channel(session_id)
        if self._feed is None or channel.publishing or channel.synced:
            return channel.seq
        return max(channel.seq, await self._log.last_seq(session_id))

    # -- events numbered elsewhere (a shared log's feed) ----------------------------------------------

    def positions(self) -> dict[str, int]:
        return {sid: c.seq for sid, c in self._channels.items() if c.subscribers and c.synced and not c.publishing}

    def watching(self) -> list[str]:
        return [sid for sid, c in self._channels.items() if c.subscribers]

    def deliver(self, session_id: str, events: list[RunEvent]) -> None:
        """Hand events of another process to local subscribers: each once, in order, none one already had."""
        channel = self._channels.get(session_id)
        if channel is None or channel.publishing or not channel.synced:
            return
        for event in events:
            if event.seq <= channel.seq:
                continue
            channel.seq = event.seq
            for subscriber in channel.subscribers:
                if event.seq > subscriber.floor:
                    subscriber.put(event)

    async def _catch_up(self, session_id: str, channel: _Channel) -> None:
        """Deliver to local watchers what the log holds after their place (before this process numbers)."""
        if self._feed is None or not channel.synced or not channel.subscribers or channel.publishing:
            return
        with contextlib.suppress(BrokerUnavailableError):
            self.deliver(session_id, (await self._log.read(session_id, channel.seq)).events)

    # -- runs ---------------------------------------------------------------------------------------

    async def claim_run(self, session_id: str, run_id: str) -> bool:
        """Make `run_id` the session's one active run, owned by this process; False if another runs."""
        last = await self._claims.claim(session_id, run_id)
        if last is None:
            return False
        channel = self._channel(session_id)
        if channel.seq < last:
            await self._catch_up(session_id, channel)  # the previous run's end, to sockets here that watch it
        channel.seq = max(channel.seq, last)
        channel.publishing = True
        return True

    async def release_run(self, session_id: str, run_id: str, final: FinalEvent | None = None) -> None:
        """End the claim of `run_id` (no-op if it is not the claimant), then deliver `final` (the run's `done`):
        numbered after every event of the run, out only once the session is free, and delivered here even if
        the transport cannot be reached (the release is then retried)."""
        await self._end(session_id, run_id, partial(self._claims.release, session_id, run_id), final)

    async def _end(self, session_id: str, run_id: str, release: Callable[[], Awaitable[None]],
                   final: FinalEvent | None) -> None:
        channel = self._channel(session_id)
        event = None
        if final is not None:
            channel.seq += 1
            event = RunEvent(final[0], final[1], session_id, run_id, channel.seq, datetime.now(UTC))
            channel.hold(event)
        try:
            await release()
        except BrokerUnavailableError:
            log.warning("session %s: transport unreachable; run %s is released when it is back", session_id, run_id)
        finally:
            channel.publishing = False
            channel.synced = bool(channel.subscribers)
            if event is not None:
                for subscriber in channel.subscribers:
                    subscriber.put(event)

    async def active_run(self, session_id: str) -> str | None:  # wherever it runs
        return await self._claims.active_run(session_id)

    async def drop_session(self, session_id: str) -> None:
        """The session was deleted or expired: its subscriptions (on every process) fail with SessionNotFoundError
        after what they hold, its held events go; later seqs of the id lie above all it issued, with a gap."""
        self.dropped(session_id, await self._log.drop(session_id))

    def dropped(self, session_id: str, base: int) -> None:
        channel = self._channels.get(session_id)
        if channel is None or channel.seq >= base:
            return  # a channel already past `base` belongs to the id's next life
        for subscriber in list(channel.subscribers):
            subscriber.fail(SessionNotFoundError())
        if channel.publishing:  # a run that did not stop in time keeps its claim until it ends
            channel.seq += 1  # a gap: its later events never follow its earlier ones
            channel.synced, channel.hold = False, self._log.holder(session_id)
        elif self._log.forget(session_id):
            del self._channels[session_id]

    # -- leases (shared transports) -------------------------------------------------------------------

    @property
    def lease_renew_interval_s(self) -> float | None:
        """How often an owner renews its runs' leases and checkpoints them; None: one process, no leases."""
        return self._leases.lease_renew_interval_s if self._leases is not None else None

    async def renew_runs(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        if self._leases is not None:
            await self._leases.renew(checkpoints)

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        return await self._leases.load_checkpoint(session_id, run_id) if self._leases is not None else None

    def on_orphan(self, handler: OrphanHandler, then: Callable[[str], None] | None = None) -> None:
        """Register the handler called (in exactly one process) for a run whose owner stopped renewing it (the
        claim stays until it returns; its event is the run's last), and `then(session_id)` once it is free."""
        self._orphans = handler
        self._after_orphan = then

    async def _close_orphan(self, session_id: str, run_id: str, owner: str) -> None:
        assert self._leases is not None
        channel = self._channel(session_id)
        # number on above anything the dead owner may have issued, written or not (see floor_seq)
        base = max(await self._log.last_seq(session_id), floor_seq())
        await self._catch_up(session_id, channel)
        channel.seq = max(channel.seq, base)
        channel.publishing = True
        try:
            final = await self._orphans(session_id, run_id) if self._orphans is not None else None
        except BaseException:
            channel.publishing = False
            with contextlib.suppress(BrokerUnavailableError):  # tried again later; the claim stays meanwhile
                await self._leases.relapse(session_id, run_id, owner)
            raise
        await self._end(session_id, run_id, partial(self._leases.release_orphan, session_id, run_id, owner), final)
        if self._after_orphan is not None:
            self._after_orphan(session_id)

    async def send_control(self, control: RunControl) -> None:
        await self._claims.send_control(control)  # to the process that owns the run

    def on_control(self, handler: ControlHandler) -> None:
        self._claims.on_control(handler)

    def forget_idle(self, now: float | None = None) -> int:
        """Forget channels nobody watches, with no run, whose seq did not move for `idle_s`."""
        now = time.monotonic() if now is None else now
        stale = []
        for sid, channel in self._channels.items():
            if channel.subscribers or channel.publishing or channel.seq != channel.swept_seq:
                channel.swept_seq, channel.idle_since = channel.seq, now
            elif now - channel.idle_since >= self._idle_s:
                stale.append(sid)
        forgotten = [sid for sid in stale if self._log.forget(sid)]
        for sid in forgotten:
            del self._channels[sid]
        return len(forgotten)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_s)
            self.forget_idle()

    async def start(self) -> None:
        if self._shared is not None:
            await self._shared.start()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)  # a cancel of close() itself still raises
            self._sweeper = None
        if self._shared is not None:
            await self._shared.close()

    async def ping(self) -> None:  # BrokerUnavailableError if the transport cannot be reached
        if self._shared is not None:
            await self._shared.ping()
