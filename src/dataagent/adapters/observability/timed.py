"""Timed store and broker calls: a proxy that reports each awaited method's latency and failures (and opens a
span around each store write when tracing).

Only coroutine methods are wrapped (each once, then cached on the proxy); every other attribute is the target's
own, so the per-token path (the hub's synchronous holder) never goes through it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from dataagent.application.telemetry import NO_TRACING, NoTelemetry, NoTracing, Telemetry, Tracing

Report = Callable[[str, float, bool], None]
READS = ("get_", "list_", "count_", "next_", "start", "close", "ping")  # store calls that write nothing


class Timed:
    """Forwards every attribute to `target`; its coroutine methods report (name, seconds, failed)."""

    def __init__(self, target: Any, report: Report, tracing: Tracing = NO_TRACING, span: str = "") -> None:
        self._target = target
        self._report = report
        self._tracing, self._span = tracing, span  # a span named `span.<method>` around each write

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        report = self._report
        traced = self._span and not name.startswith(READS) and not isinstance(self._tracing, NoTracing)
        span = self._tracing.span if traced else None
        label = f"{self._span}.{name}"

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                if span is None:
                    result = await attribute(*args, **kwargs)
                else:
                    with span(label, _attributes(name, args)):
                        result = await attribute(*args, **kwargs)
            except Exception:  # a cancel is not a failure of the store or broker
                report(name, time.perf_counter() - began, True)
                raise
            report(name, time.perf_counter() - began, False)
            return result

        self.__dict__[name] = timed
        return timed


def _attributes(operation: str, args: tuple[Any, ...]) -> dict[str, str]:
    """The span's attributes: the operation, and the session (a first argument that is its id, or has one)."""
    first = args[0] if args else None
    session_id = first if isinstance(first, str) else getattr(first, "session_id", None)
    return {"operation": operation, "session_id": session_id} if isinstance(session_id, str) else {
        "operation": operation}


def timed_store(store: Any, telemetry: Telemetry, tracing: Tracing = NO_TRACING) -> Any:
    """The session store, its calls reported as `store_call` and its writes traced (the store itself when
    nothing is reported or traced)."""
    if isinstance(telemetry, NoTelemetry) and isinstance(tracing, NoTracing):
        return store
    return Timed(store, telemetry.store_call, tracing, "dataagent.store")


def timed_broker(transport: Any, telemetry: Telemetry) -> Any:
    """The event transport, its awaited calls reported as `broker_call`."""
    return transport if isinstance(telemetry, NoTelemetry) else Timed(transport, telemetry.broker_call)
