"""The telemetry ports: what the use cases and adapters report (metrics) and the spans they open (tracing), each
with its no-op default; adapters/observability implements them.

Every method is cheap and never raises. None is called per token: frames are counted per batch, the time to
the first token once per run. Labels are bounded sets (a status, a reason code, a statement type), never an id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol

Attributes = Mapping[str, str | int | float | bool]


class Telemetry(Protocol):
    """Counts and times what the server does; the default (NoTelemetry) does nothing."""

    def run_started(self) -> None:
        """An answer started (the active runs gauge goes up)."""

    def run_ended(self, status: str, reason: str | None, duration_s: float) -> None:
        """An answer ended with `status` (completed, cancelled, failed) and `reason` (a code, or None)."""

    def first_token(self, seconds: float) -> None:
        """A run's first text delta came `seconds` after its start."""

    def cancel_done(self, seconds: float) -> None:
        """A cancelled run's `done` came `seconds` after the cancel reached its process."""

    def approval_waited(self, seconds: float, decision: str) -> None:
        """An approval was decided (approve, edit, reject, timeout, cancel) after `seconds`."""

    def queue_waited(self, seconds: float) -> None:
        """A queued question (multitask_strategy=enqueue) started after `seconds` in the queue."""

    def sql_statement(self, statement_type: str, outcome: str, duration_s: float, rows: int) -> None:
        """A run_sql call ended: `outcome` ran, rejected, refused or failed; duration and rows when it ran."""

    def llm_call(self, outcome: str, duration_s: float) -> None:
        """One LLM completion ended (ok or error), after its retries."""

    def llm_retry(self) -> None:
        """A transient LLM failure is retried."""

    def llm_tokens(self, prompt: int, completion: int) -> None:
        """Token usage one completion reported."""

    def connection_opened(self, transport: str) -> None:
        """A WebSocket (`ws`) or server-sent event stream (`sse`) started to stream."""

    def connection_closed(self, transport: str) -> None:
        """It ended."""

    def frames_sent(self, transport: str, count: int) -> None:
        """`count` frames (events) were written to clients of `transport`."""

    def slow_consumer(self, transport: str) -> None:
        """A client was dropped because it read too slowly."""

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        """A session store method returned (or raised, `failed`)."""

    def broker_call(self, operation: str, seconds: float, failed: bool) -> None:
        """An awaited event transport call returned (or raised, `failed`)."""

    def commit_batch(self, size: int) -> None:
        """The MySQL store group-committed `size` appends in one transaction."""

    def rate_limited(self, transport: str) -> None:
        """A request was refused with rate_limited (REST, ws or sse)."""


class NoTelemetry(Telemetry):
    """Reports nothing: the default of every use case and adapter."""

    def run_started(self) -> None:
        pass

    def run_ended(self, status: str, reason: str | None, duration_s: float) -> None:
        pass

    def first_token(self, seconds: float) -> None:
        pass

    def cancel_done(self, seconds: float) -> None:
        pass

    def approval_waited(self, seconds: float, decision: str) -> None:
        pass

    def queue_waited(self, seconds: float) -> None:
        pass

    def sql_statement(self, statement_type: str, outcome: str, duration_s: float, rows: int) -> None:
        pass

    def llm_call(self, outcome: str, duration_s: float) -> None:
        pass

    def llm_retry(self) -> None:
        pass

    def llm_tokens(self, prompt: int, completion: int) -> None:
        pass

    def connection_opened(self, transport: str) -> None:
        pass

    def connection_closed(self, transport: str) -> None:
        pass

    def frames_sent(self, transport: str, count: int) -> None:
        pass

    def slow_consumer(self, transport: str) -> None:
        pass

    def store_call(self, operation: str, seconds: float, failed: bool) -> None:
        pass

    def broker_call(self, operation: str, seconds: float, failed: bool) -> None:
        pass

    def commit_batch(self, size: int) -> None:
        pass

    def rate_limited(self, transport: str) -> None:
        pass


NO_TELEMETRY: Telemetry = NoTelemetry()


class Tracing(Protocol):
    """Opens spans (OpenTelemetry with the `otel` extra); the default (NoTracing) opens none."""

    def span(self, name: str, attributes: Attributes, current: bool = True) -> AbstractContextManager[object]:
        """A span around the block, a child of the current one; `current`: its children are the block's spans
        (False where the block yields, as an async generator does, and must not change its consumer's context)."""
        ...


class NoTracing(Tracing):
    """Opens no span."""

    def span(self, name: str, attributes: Attributes, current: bool = True) -> AbstractContextManager[object]:
        return contextlib.nullcontext()


NO_TRACING: Tracing = NoTracing()
