"""The in-process run broker: one process owns every run, so control and events stay in memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dataagent.application.ports import ControlHandler, FinalEvent, OrphanHandler, RunControl
from dataagent.application.streams import Subscription
from dataagent.domain.errors import SessionNotFoundError
from dataagent.domain.events import EventType, RunEvent, text_delta

SWEEP_INTERVAL_S = 30.0


def _seq_base() -> int:
    """The first seq of a session's channel: above any seq a previous process could have issued.

    A new channel starts at (unix time in ms) * 1000, so a restart never reuses a value unless the
    previous process sustained more than 1000 events per millisecond in that session.
    """
    return int(time.time() * 1000) * 1000


# A held text delta is kept as a tuple of atoms (seq, run_id, timestamp, content), which CPython's collector
# stops tracking: a server holding a million deltas for replay then pays nothing for them at each GC pass.
_HeldText = tuple[int, str | None, datetime, str]
_Held = RunEvent | _HeldText


def _unhold(session_id: str, item: _Held) -> RunEvent:
    if isinstance(item, RunEvent):
        return item
    seq, run_id, timestamp, content = item
    return RunEvent("text", text_delta(content), session_id, run_id, seq, timestamp)


def _seq_of(item: _Held) -> int:
    return item.seq if isinstance(item, RunEvent) else item[0]


@dataclass(slots=True)
class _Channel:
    seq: int
    held: deque[_Held]
    subscribers: set[Subscription] = field(default_factory=set)
    active_run: str | None = None
    run_start_seq: int | None = None
    last_used: float = field(default_factory=time.monotonic)


class InMemoryRunBroker:
    """Numbers and fans out a session's events, holds the last `replay_events` of them for replay.

    A channel with no subscriber and no active run is forgotten `replay_ttl_s` after its last event.
    """

    def __init__(self, replay_events: int = 1000, replay_ttl_s: float = 600.0) -> None:
        self._replay_events = replay_events
        self._replay_ttl_s = replay_ttl_s
        self._channels: dict[str, _Channel] = {}
        self._forgotten_seq = 0  # the highest seq of a channel dropped or forgotten: new channels start above it
        self._handler: ControlHandler | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def _channel(self, session_id: str) -> _Channel:
        channel = self._channels.get(session_id)
        if channel is None:
            channel = _Channel(max(_seq_base(), self._forgotten_seq + 1), deque(maxlen=self._replay_events))
            self._channels[session_id] = channel
        return channel

    def publish(self, session_id: str, run_id: str | None, event_type: str, data: dict[str, Any]) -> RunEvent:
        channel = self._channels.get(session_id) or self._channel(session_id)
        seq = channel.seq = channel.seq + 1
        now = datetime.now(UTC)
        event = RunEvent(event_type, data, session_id, run_id, seq, now)
        if event_type == "text" and len(data) == 2 and data.get("is_final") is False:  # is_text_delta(), inline
            channel.held.append((seq, run_id, now, data["content"]))
        else:  # per-token work kept to the minimum; a run's start and end touch the channel
            channel.held.append(event)
            channel.last_used = time.monotonic()
            if event_type == EventType.RUN_STARTED:
                channel.run_start_seq = seq
        for subscriber in channel.subscribers:  # put() never changes the set synchronously
            subscriber.put(event)
        return event

    async def subscribe(self, session_id: str, after_seq: int | None, maxsize: int) -> Subscription:
        channel = self._channel(session_id)
        replayed, recovered = self._replay(session_id, channel, after_seq)
        subscription = Subscription(replayed, recovered, maxsize, on_close=channel.subscribers.discard)
        channel.subscribers.add(subscription)
        return subscription

    @staticmethod
    def _replay(session_id: str, channel: _Channel, after_seq: int | None) -> tuple[list[RunEvent], bool]:
        if after_seq is None:
            if channel.active_run is None or channel.run_start_seq is None:
                return [], True
            after_seq = channel.run_start_seq - 1
        if after_seq > channel.seq:
            return [], False  # a seq this process never issued: from before a restart
        held = [_unhold(session_id, e) for e in channel.held if _seq_of(e) > after_seq]
        if after_seq == channel.seq or (held and held[0].seq == after_seq + 1):
            return held, True
        return [], False  # a gap: replaying the rest would only mislead; the client reloads history

    async def replay(self, session_id: str, after_seq: int) -> tuple[list[RunEvent], bool]:
        return self._replay(session_id, self._channel(session_id), after_seq)

    async def last_seq(self, session_id: str) -> int:
        return self._channel(session_id).seq

    async def claim_run(self, session_id: str, run_id: str) -> bool:
        channel = self._channel(session_id)
        if channel.active_run is not None:
            return False
        channel.active_run = run_id
        return True

    async def release_run(self, session_id: str, run_id: str, final: FinalEvent | None = None) -> None:
        channel = self._channels.get(session_id)
        if channel is not None and channel.active_run == run_id:
            channel.active_run = None
        if final is not None:
            self.publish(session_id, run_id, *final)

    async def active_run(self, session_id: str) -> str | None:
        channel = self._channels.get(session_id)
        return channel.active_run if channel else None

    async def drop_session(self, session_id: str) -> None:
        channel = self._channels.get(session_id)
        if channel is None:
            return
        for subscriber in list(channel.subscribers):
            subscriber.fail(SessionNotFoundError())
        if channel.active_run is None:
            del self._channels[session_id]
            self._forgotten_seq = max(self._forgotten_seq, channel.seq)
        else:  # a run that did not stop in time keeps its claim until it ends; its held events go all the same
            channel.held.clear()
            channel.seq += 1
            channel.run_start_seq = None

    @property
    def lease_renew_interval_s(self) -> float | None:
        return None  # one process: a run cannot outlive its owner

    async def renew_runs(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        return None

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        return None

    def on_orphan(self, handler: OrphanHandler) -> None:
        return None

    async def send_control(self, control: RunControl) -> None:
        if self._handler is not None:
            await self._handler(control)

    def on_control(self, handler: ControlHandler) -> None:
        self._handler = handler

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="broker-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def ping(self) -> None:
        return None

    def forget_idle(self, now: float | None = None) -> int:
        """Drop channels nobody watches, with no active run, idle longer than the replay TTL."""
        now = time.monotonic() if now is None else now
        stale = [
            sid for sid, c in self._channels.items()
            if not c.subscribers and c.active_run is None and now - c.last_used > self._replay_ttl_s
        ]
        for sid in stale:
            self._forgotten_seq = max(self._forgotten_seq, self._channels.pop(sid).seq)
        return len(stale)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.forget_idle()
