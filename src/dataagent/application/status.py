"""StatusService: what the health check reports."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dataagent.application.capacity import Capacity
from dataagent.application.hub import EventHub
from dataagent.application.ports import SessionRepository
from dataagent.application.runs import RunManager
from dataagent.domain.errors import DataAgentError


@dataclass(frozen=True, slots=True)
class StatusReport:
    ok: bool
    uptime_s: float
    store: str
    store_check: str
    broker: str
    broker_check: str
    agent: str
    active_runs: int
    connections: int


class StatusService:
    def __init__(
        self,
        repository: SessionRepository,
        broker: EventHub,
        runs: RunManager,
        capacity: Capacity,
        names: dict[str, str],
    ) -> None:
        self._repo = repository
        self._broker = broker
        self._runs = runs
        self._capacity = capacity
        self._names = names
        self._started = time.monotonic()

    async def report(self) -> StatusReport:
        store_check = await self._check(self._repo.ping)
        broker_check = await self._check(self._broker.ping)
        return StatusReport(
            ok=store_check == "ok" and broker_check == "ok",
            uptime_s=round(time.monotonic() - self._started, 3),
            store=self._names.get("store", ""),
            store_check=store_check,
            broker=self._names.get("broker", ""),
            broker_check=broker_check,
            agent=self._names.get("agent", ""),
            active_runs=self._runs.active_runs,
            connections=self._capacity.in_use,
        )

    @staticmethod
    async def _check(ping: Callable[[], Awaitable[None]]) -> str:
        try:
            await ping()
        except DataAgentError as exc:
            return exc.code
        return "ok"
