"""Messages between processes over pub/sub: control for a run's owner (cancel, approval decisions), word that a
session was dropped, and the watch registry (which processes have sockets on a session, so its owner flushes
it promptly).

`ctl:{owner}` is one process's channel (control for its runs, "someone else watches your session"); `ctl` is
every process's (a session was dropped). `watch:{sid}` is a sorted set of watching processes scored by expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from dataagent.adapters.redis.client import Link
from dataagent.adapters.redis.outbox import Outbox
from dataagent.application.replay import floor_seq
from dataagent.application.transport import ControlHandler, FeedListener, RunControl
from dataagent.domain.approvals import Decision
from dataagent.domain.errors import BrokerUnavailableError

log = logging.getLogger("dataagent.redis")

WATCH_TTL_MS = 6000  # a watcher registration lapses this long after the watching process stops refreshing it
RETRY_S = 1.0
LISTEN_POLL_S = 0.2  # the longest a pub/sub read waits before the listener looks whether it must stop


class Control:
    def __init__(self, link: Link, outbox: Outbox, seq_ttl_ms: int) -> None:
        self._link = link
        self._outbox = outbox
        self._seq_ttl_ms = seq_ttl_ms
        self._drop = link.script("drop")
        self._handler: ControlHandler | None = None
        self.listener: FeedListener | None = None
        self.stopping = False  # set by close: the listener ends at its next look

    def on_control(self, handler: ControlHandler) -> None:
        self._handler = handler

    async def owner_of(self, session_id: str) -> tuple[str, str] | None:
        """(run_id, owner) of the session's active run, or None."""
        value = await self._link.call(self._link.redis.get(self._link.k("run", session_id)))
        if not value:
            return None
        run_id, _, owner = value.decode().partition("|")
        return run_id, owner

    async def send(self, control: RunControl) -> None:
        found = await self.owner_of(control.session_id)
        if found is None or found[0] != control.run_id:
            return
        owner = found[1]
        if owner == self._link.owner:
            if self._handler is not None:
                await self._handler(control)
            return
        payload = orjson.dumps({
            "kind": control.kind, "session_id": control.session_id, "run_id": control.run_id,
            "reason": control.reason, "interrupt_id": control.interrupt_id,
            "decision": control.decision.as_dict() if control.decision else None,
        })
        await self._link.call(self._link.redis.publish(self._link.k("ctl", owner), payload))

    async def drop(self, session_id: str) -> int:
        """Drop the session's stream and watchers, move its counter past the floor; tell every process (this one
        too, through its listener); the seq above which the id's next life numbers."""
        link = self._link
        keys = [link.k("ev", session_id), link.k("seq", session_id), link.k("watch", session_id)]
        base = int(await link.call(self._drop(keys=keys, args=[floor_seq(), self._seq_ttl_ms])))
        payload = orjson.dumps({"kind": "drop", "session_id": session_id, "seq": base})
        await link.call(link.redis.publish(link.k("ctl"), payload))
        return base

    # -- the watch registry -------------------------------------------------------------------------

    async def watch(self, session_id: str) -> None:
        """Record that this process has sockets on the session, and tell a running owner elsewhere at once."""
        await self.register([session_id])
        found = await self.owner_of(session_id)
        if found is not None and found[1] != self._link.owner:
            payload = orjson.dumps({"kind": "watch", "session_id": session_id})
            await self._link.call(self._link.redis.publish(self._link.k("ctl", found[1]), payload))

    async def register(self, sessions: list[str]) -> None:
        expiry = int(time.time() * 1000) + WATCH_TTL_MS
        pipe = self._link.redis.pipeline(transaction=False)
        for sid in sessions:
            pipe.zadd(self._link.k("watch", sid), {self._link.owner: expiry})
            pipe.pexpire(self._link.k("watch", sid), WATCH_TTL_MS)
        await self._link.call(pipe.execute())

    async def watched_elsewhere(self, sessions: list[str]) -> list[bool]:
        """For each session, whether another process registered sockets on it (and is still alive)."""
        now = int(time.time() * 1000)
        pipe = self._link.redis.pipeline(transaction=False)
        for sid in sessions:
            pipe.zrangebyscore(self._link.k("watch", sid), now, "+inf")
        found = await self._link.call(pipe.execute())
        return [any(m.decode() != self._link.owner for m in members) for members in found]

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(WATCH_TTL_MS / 3000)
            watched = self.listener.watching() if self.listener is not None else []
            with contextlib.suppress(BrokerUnavailableError):
                if watched:
                    await self.register(watched)

    # -- the listener -------------------------------------------------------------------------------

    async def listen_forever(self) -> None:
        """Handle the messages of this process's channel and of everyone's until `stopping`.

        Not left to cancellation alone: redis-py's `get_message(timeout=...)` can swallow a cancel that lands as
        its own timeout fires, and the task then read on forever (close() right after start() hung). Each read
        waits at most LISTEN_POLL_S, and the loop ends when `stopping` is set."""
        while not self.stopping:
            try:
                async with self._link.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._link.k("ctl", self._link.owner), self._link.k("ctl"))
                    while not self.stopping:
                        message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                        if message is None:
                            continue
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
            if self.listener is not None:
                self.listener.dropped(raw["session_id"], int(raw["seq"]))
            return
        if raw.get("kind") == "watch":
            self._outbox.set_watched(raw["session_id"], True)
            return
        if self._handler is None:
            return
        decision = Decision.from_dict(raw["decision"]) if raw.get("decision") else None
        await self._handler(RunControl(
            raw["kind"], raw["session_id"], raw["run_id"], raw.get("reason") or "user", raw.get("interrupt_id"),
            decision,
        ))
