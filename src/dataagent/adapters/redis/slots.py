"""DATAAGENT_MAX_RUNS_PER_KEY across processes: `slots:{who}`, a sorted set of the key's running runs scored by
the expiry of each slot (ms). A run's owner refreshes its slot with its lease (application/leases.py) and frees it
at its end; the slot of a run whose process died lapses with its lease (lua/slot.lua drops expired members)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dataagent.adapters.redis.client import PREFIX, Link
from dataagent.application.limits import RUN_RETRY_S, Quota, RunSlots


class RedisRunSlots(RunSlots):
    def __init__(self, client: Any, max_runs: int, lease_s: float = 6.0, prefix: str = PREFIX) -> None:
        self.link = Link(client, prefix)
        self.max_runs = max_runs
        self.lease_ms = int(lease_s * 1000)
        self._slot = self.link.script("slot")

    def _expiry(self) -> tuple[int, int]:
        now = int(time.time() * 1000)
        return now, now + self.lease_ms

    async def acquire(self, who: str, run_id: str) -> Quota:
        link = self.link
        now, expiry = self._expiry()
        taken, held = await link.call(self._slot(
            keys=[link.k("slots", who)], args=[run_id, now, expiry, self.max_runs, self.lease_ms * 2]))
        return Quota(bool(taken), self.max_runs, max(0, self.max_runs - int(held)), RUN_RETRY_S)

    async def available(self, who: str) -> Quota:
        now, _ = self._expiry()
        held = int(await self.link.call(self.link.redis.zcount(self.link.k("slots", who), f"({now}", "+inf")))
        return Quota(held < self.max_runs, self.max_runs, max(0, self.max_runs - held), RUN_RETRY_S)

    async def release(self, who: str, run_id: str) -> None:
        await self.link.call(self.link.redis.zrem(self.link.k("slots", who), run_id))

    async def refresh(self, held: Mapping[str, str]) -> None:
        link = self.link
        _, expiry = self._expiry()
        pipe = link.redis.pipeline(transaction=False)
        for run_id, who in held.items():
            key = link.k("slots", who)
            pipe.zadd(key, {run_id: expiry}, xx=True)  # a slot freed meanwhile stays free
            pipe.pexpire(key, self.lease_ms * 2)
        await link.call(pipe.execute())
