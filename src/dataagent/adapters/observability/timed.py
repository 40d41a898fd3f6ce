"""Timed store and broker calls: a proxy that reports each awaited method's latency and failures.

Only coroutine methods are wrapped (each once, then cached on the proxy); every other attribute is the target's
own, so the per-token path (the hub's synchronous holder) never goes through it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from dataagent.application.telemetry import NoTelemetry, Telemetry

Report = Callable[[str, float, bool], None]


class Timed:
    """Forwards every attribute to `target`; its coroutine methods report (name, seconds, failed)."""

    def __init__(self, target: Any, report: Report) -> None:
        self._target = target
        self._report = report

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        report = self._report

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                result = await attribute(*args, **kwargs)
            except Exception:  # a cancel is not a failure of the store or broker
                report(name, time.perf_counter() - began, True)
                raise
            report(name, time.perf_counter() - began, False)
            return result

        self.__dict__[name] = timed
        return timed


def timed_store(store: Any, telemetry: Telemetry) -> Any:
    """The session store, its calls reported as `store_call` (the store itself when nothing is reported)."""
    return store if isinstance(telemetry, NoTelemetry) else Timed(store, telemetry.store_call)


def timed_broker(transport: Any, telemetry: Telemetry) -> Any:
    """The event transport, its awaited calls reported as `broker_call`."""
    return transport if isinstance(telemetry, NoTelemetry) else Timed(transport, telemetry.broker_call)
