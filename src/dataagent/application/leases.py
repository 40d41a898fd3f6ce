"""Several processes: the owner renews its runs' leases, and checkpoints them for the process that closes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from dataagent.application.approvals import LiveRun
from dataagent.application.hub import EventHub
from dataagent.application.limits import Limits
from dataagent.application.tasks import stop_tasks
from dataagent.domain.errors import DataAgentError

log = logging.getLogger("dataagent.failover")

Checkpoints = dict[tuple[str, str], dict[str, Any]]


def checkpoint(live: LiveRun, seq: int) -> dict[str, Any]:
    """What another process needs to close the run if this one dies: the seq of its `run_started` (to read its
    events back from the stream), and for what the stream may no longer hold, its text so far with `seq`, the
    last seq issued in the session when it was taken (every delta up to it is in the text, none after: deltas
    are kept and published in one step), its tool calls and token usage."""
    run = live.run
    return {
        "started_seq": live.started_seq, "seq": seq, "text": run.content, "tool_calls": run.tool_calls,
        "token_usage": run.token_usage.as_dict() if run.token_usage else None,
    }


class LeaseKeeper:
    """Renews the leases of a process's runs every lease/3 and checkpoints them, and refreshes their run slots,
    while it has runs (shared brokers only: the local broker has no leases)."""

    def __init__(self, broker: EventHub, runs: Mapping[str, LiveRun], limits: Limits | None = None) -> None:
        self._broker = broker
        self._runs = runs
        self._limits = limits or Limits()
        self._task: asyncio.Task[None] | None = None

    def checkpoints(self) -> Checkpoints:
        """(session_id, run_id) -> the run's checkpoint, for every run of this process."""
        issued = self._broker.issued
        return {(live.run.session_id, run_id): checkpoint(live, issued(live.run.session_id))
                for run_id, live in self._runs.items()}

    def ensure(self) -> None:
        """Start renewing, unless the broker has no leases or the renewal already runs."""
        interval = self._broker.lease_renew_interval_s
        if interval is not None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._keep(interval), name="run-leases")

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    async def _keep(self, interval: float) -> None:
        while self._runs:
            await asyncio.sleep(interval)
            checkpoints = self.checkpoints()
            try:
                await self._broker.renew_runs(checkpoints)
                await self._limits.keep_slots({run_id: live.who for run_id, live in self._runs.items() if live.who})
            except DataAgentError as exc:
                log.warning("could not renew %d run leases: %s", len(checkpoints), exc.code)
