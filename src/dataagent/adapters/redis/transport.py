"""The Redis transport: several workers and hosts share runs, events, replay and control through Redis.

Keys (prefix `da:` by default, DATAAGENT_REDIS_PREFIX):
- `run:{sid}`    the session's one active run, `run_id|owner` (leases.py);
- `leases`       a sorted set of `sid|run_id|owner` scored by lease expiry (ms); owners renew it (leases.py);
- `ckpt:{run}`   the owner's checkpoint of a run (partial text, tool calls) for failover (leases.py);
- `seq:{sid}`    the session's last seq, so a run on another process numbers on (claim.lua, flush.lua);
- `ev:{sid}`     a stream of event batches, each entry's id the batch's last seq, trimmed to the last
                 `replay_events` events: the replay buffer (outbox.py writes it), and the feed of remote watchers
                 (feed.py reads it);
- `watch:{sid}`  the processes watching the session from elsewhere (control.py);
- `ctl:{owner}`, `ctl`  pub/sub: control for one process's runs, and word to every process (control.py).
Beside the transport, the per-key limits (application/limits.py): `slots:{who}` the runs a key has going
(slots.py), `rate:LIMITER/...` its window of new questions (the `limits` library, adapters/ratelimit/).

The hub (application/hub.py) numbers, replays and fans out; this class only wires the modules to its ports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from dataagent.adapters.redis.client import PREFIX, Link
from dataagent.adapters.redis.control import Control
from dataagent.adapters.redis.feed import StreamReader
from dataagent.adapters.redis.leases import RunLeases
from dataagent.adapters.redis.outbox import Outbox
from dataagent.application.hub import EventHub
from dataagent.application.transport import (
    ControlHandler,
    EventLog,
    ExpiredHandler,
    FeedListener,
    Held,
    RunClaims,
    RunControl,
    SharedTransport,
)
from dataagent.domain.errors import BrokerUnavailableError
from dataagent.domain.events import RunEvent


class RedisTransport(EventLog, RunClaims, SharedTransport):
    def __init__(
        self,
        client: Any,
        replay_events: int = 1000,
        replay_ttl_s: float = 600.0,
        lease_s: float = 6.0,
        flush_interval_s: float = 0.01,
        lazy_flush_s: float = 0.25,
        prefix: str = PREFIX,
    ) -> None:
        self.link = Link(client, prefix)
        replay_ttl_ms = int(replay_ttl_s * 1000)
        seq_ttl_ms = replay_ttl_ms * 100
        lease_ms = int(lease_s * 1000)
        self.outbox = Outbox(self.link, replay_events, replay_ttl_ms, seq_ttl_ms, lease_ms * 10,
                             flush_interval_s, lazy_flush_s)
        self.reader = StreamReader(self.link, self.outbox, seq_ttl_ms)
        self.control = Control(self.link, self.outbox, seq_ttl_ms)
        self.leases = RunLeases(self.link, self.outbox, self.control, lease_s, seq_ttl_ms)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def owner(self) -> str:
        return self.link.owner

    # -- EventLog -----------------------------------------------------------------------------------

    def holder(self, session_id: str) -> Callable[[RunEvent], None]:
        return self.outbox.append

    def known_last(self, session_id: str) -> int:
        return self.outbox.last(session_id)

    async def read(self, session_id: str, after_seq: int | None) -> Held:
        return await self.reader.read(session_id, after_seq)

    async def last_seq(self, session_id: str) -> int:
        return await self.reader.last_seq(session_id)

    async def drop(self, session_id: str) -> int:
        return await self.control.drop(session_id)

    def forget(self, session_id: str) -> bool:
        return self.outbox.forget(session_id)

    # -- RunClaims ----------------------------------------------------------------------------------

    async def claim(self, session_id: str, run_id: str) -> int | None:
        return await self.leases.claim(session_id, run_id)

    async def release(self, session_id: str, run_id: str) -> None:
        await self.leases.release(session_id, run_id)

    async def active_run(self, session_id: str) -> str | None:
        return await self.leases.active_run(session_id)

    async def send_control(self, control: RunControl) -> None:
        await self.control.send(control)

    def on_control(self, handler: ControlHandler) -> None:
        self.control.on_control(handler)

    # -- Leases, Feed ---------------------------------------------------------------------------------

    @property
    def lease_renew_interval_s(self) -> float:
        return self.leases.lease_ms / 3000

    async def renew(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        await self.leases.renew(checkpoints)

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        return await self.leases.load_checkpoint(session_id, run_id)

    def on_expired(self, handler: ExpiredHandler) -> None:
        self.leases.on_expired(handler)

    async def release_orphan(self, session_id: str, run_id: str, owner: str) -> None:
        await self.leases.release(session_id, run_id, owner)

    async def relapse(self, session_id: str, run_id: str, owner: str) -> None:
        await self.leases.relapse(session_id, run_id, owner)

    def attach(self, listener: FeedListener) -> None:
        self.reader.listener = self.control.listener = listener

    async def watch(self, session_id: str) -> None:
        await self.control.watch(session_id)

    # -- Connection ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self.control.stopping = False
        await self.ping()
        await self.outbox.load()
        for work in (self.outbox.flush_forever, self.reader.feed_forever, self.control.refresh_forever,
                     self.leases.sweep_forever, self.control.listen_forever):
            self._tasks.append(asyncio.create_task(work(), name=f"redis:{work.__qualname__}"))

    async def close(self) -> None:
        """Write what is unflushed, stop the background work; the client is the container's to close."""
        with contextlib.suppress(BrokerUnavailableError):
            await self.outbox.flush()
        self.control.stopping = True
        for task in self._tasks:
            task.cancel()
        # gather, not a suppressed await per task: a cancel of close() itself must not be swallowed
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def ping(self) -> None:
        await self.link.call(self.link.redis.ping())


def redis_hub(transport: RedisTransport) -> EventHub:
    """The hub over a Redis transport: it forgets a session's local state as soon as nobody here uses it."""
    return EventHub(transport, transport, transport, idle_s=0.0, sweep_s=transport.leases.lease_ms / 6000)
