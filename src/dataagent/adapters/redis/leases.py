"""Runs shared between processes: claims (`run:{sid}` = `run_id|owner`), leases (the sorted set `leases` of
`sid|run_id|owner` scored by expiry in ms), checkpoints (`ckpt:{run_id}`), and the sweep that hands a run whose
owner stopped renewing to exactly one other process (the one whose ZREM wins)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from dataagent.adapters.redis.client import Link
from dataagent.adapters.redis.control import Control
from dataagent.adapters.redis.outbox import Outbox
from dataagent.application.replay import floor_seq
from dataagent.application.transport import ExpiredHandler
from dataagent.domain.errors import BrokerUnavailableError

log = logging.getLogger("dataagent.redis")

SWEEP_BATCH = 20


class RunLeases:
    def __init__(self, link: Link, outbox: Outbox, control: Control, lease_s: float, seq_ttl_ms: int) -> None:
        self._link = link
        self._outbox = outbox
        self._control = control
        self.lease_ms = int(lease_s * 1000)
        self._seq_ttl_ms = seq_ttl_ms
        self._claim = link.script("claim")
        self._renew = link.script("renew")
        self._runs: dict[str, str] = {}  # run_id -> session_id of the runs this process owns
        self._expired: ExpiredHandler | None = None

    # -- claims -------------------------------------------------------------------------------------

    async def claim(self, session_id: str, run_id: str) -> int | None:
        link = self._link
        expiry = int(time.time() * 1000) + self.lease_ms
        last = int(await link.call(self._claim(
            keys=[link.k("run", session_id), link.k("leases"), link.k("seq", session_id)],
            args=[f"{run_id}|{link.owner}", link.member(session_id, run_id), expiry, floor_seq(), self._seq_ttl_ms],
        )))
        if last < 0:
            return None
        self._runs[run_id] = session_id
        try:
            self._outbox.set_watched(session_id, (await self._control.watched_elsewhere([session_id]))[0])
        except BrokerUnavailableError:
            pass
        return last

    async def release(self, session_id: str, run_id: str, owner: str | None = None) -> None:
        """End the claim together with the session's last events (one flush); retried while Redis is away."""
        if owner is None:
            self._runs.pop(run_id, None)
        owner = owner or self._link.owner
        self._outbox.queue_release(
            session_id, (f"{run_id}|{owner}", self._link.member(session_id, run_id, owner), run_id))
        await self._outbox.flush([session_id])

    async def active_run(self, session_id: str) -> str | None:
        found = await self._control.owner_of(session_id)
        return found[0] if found is not None else None

    # -- leases and checkpoints -----------------------------------------------------------------------

    async def renew(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        if not checkpoints:
            return
        # what a checkpoint holds was published before it was taken: once flushed, the stream has all of it,
        # so the text another process persists if this one dies is never more than what watchers were sent
        await self._outbox.flush()
        link = self._link
        expiry = int(time.time() * 1000) + self.lease_ms
        pipe = link.redis.pipeline(transaction=False)
        for (sid, run_id), state in checkpoints.items():
            await self._renew(
                keys=[link.k("run", sid), link.k("leases"), link.k("ckpt", run_id)],
                args=[f"{run_id}|{link.owner}", link.member(sid, run_id), expiry, orjson.dumps(state),
                      self.lease_ms * 10],
                client=pipe,
            )
        results = await link.call(pipe.execute())
        for (sid, run_id), kept in zip(checkpoints, results, strict=True):
            if not kept and run_id in self._runs:
                log.error("run %s of session %s was closed by another process while this one could not reach "
                          "Redis; it goes on here", run_id, sid)
        sessions = [sid for sid, _ in checkpoints]
        for sid, watched in zip(sessions, await self._control.watched_elsewhere(sessions), strict=True):
            self._outbox.set_watched(sid, watched)

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        raw = await self._link.call(self._link.redis.get(self._link.k("ckpt", run_id)))
        state = orjson.loads(raw) if raw else None
        return dict(state) if isinstance(state, dict) else None

    # -- orphans ------------------------------------------------------------------------------------

    def on_expired(self, handler: ExpiredHandler) -> None:
        self._expired = handler

    async def relapse(self, session_id: str, run_id: str, owner: str) -> None:
        expiry = int(time.time() * 1000) + self.lease_ms
        member = self._link.member(session_id, run_id, owner)
        await self._link.call(self._link.redis.zadd(self._link.k("leases"), {member: expiry}))

    async def sweep_forever(self) -> None:
        """Find leases nobody renewed in time; the process whose ZREM wins closes that run."""
        while True:
            await asyncio.sleep(self.lease_ms / 6000)
            try:
                await self.sweep()
            except BrokerUnavailableError:
                continue
            except Exception:
                log.exception("closing an orphaned run failed")

    async def sweep(self) -> None:
        link = self._link
        now = int(time.time() * 1000)
        expired = await link.call(link.redis.zrangebyscore(link.k("leases"), "-inf", now, start=0, num=SWEEP_BATCH))
        since = link.connected_since
        if since is None or time.monotonic() - since < self.lease_ms / 1000:
            return  # just (re)connected: live owners, cut off like this process, have not renewed yet
        for member in expired:
            session_id, run_id, owner = member.decode().split("|", 2)
            if owner == link.owner and run_id in self._runs:
                continue  # our own run, late in renewing: it is alive, and the next renewal pushes its lease
            if await link.call(link.redis.zrem(link.k("leases"), member)) and self._expired is not None:
                await self._expired(session_id, run_id, owner)
