"""DATAAGENT_MAX_RUNS_PER_KEY in one process: the runs each key has going, held from their start to their end."""

from __future__ import annotations

from collections.abc import Mapping

from dataagent.application.limits import RUN_RETRY_S, Quota, RunSlots


class InMemoryRunSlots(RunSlots):
    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._held: dict[str, set[str]] = {}

    async def acquire(self, who: str, run_id: str) -> Quota:
        runs = self._held.setdefault(who, set())
        allowed = run_id in runs or len(runs) < self.max_runs
        if allowed:
            runs.add(run_id)
        return Quota(allowed, self.max_runs, self.max_runs - len(runs), RUN_RETRY_S)

    async def available(self, who: str) -> Quota:
        held = len(self._held.get(who, ()))
        return Quota(held < self.max_runs, self.max_runs, max(0, self.max_runs - held), RUN_RETRY_S)

    async def release(self, who: str, run_id: str) -> None:
        runs = self._held.get(who)
        if runs is not None:
            runs.discard(run_id)
            if not runs:
                del self._held[who]

    async def refresh(self, held: Mapping[str, str]) -> None:
        """Nothing lapses in one process: a run's slot is freed by its end."""
