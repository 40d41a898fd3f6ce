"""A bounded subscription to a session's events: the send buffer of one watcher."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from dataagent.domain.errors import DataAgentError
from dataagent.domain.events import RunEvent


class SlowConsumerError(DataAgentError):
    code = "slow_consumer"
    default_message = "The client did not read its events fast enough"


class SubscriptionClosedError(DataAgentError):
    code = "subscription_closed"
    default_message = "The subscription was closed"


class Subscription:
    """Replayed events, then live ones; when its bounded buffer overflows it fails with SlowConsumerError."""

    __slots__ = ("replayed", "recovered", "_queue", "_maxsize", "_state", "_on_close", "_waiter")

    def __init__(
        self,
        replayed: list[RunEvent],
        recovered: bool,
        maxsize: int,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.replayed = replayed
        self.recovered = recovered
        self._queue: list[RunEvent] = []
        self._maxsize = maxsize
        self._state = "open"  # open | overflowed | closed
        self._on_close = on_close
        self._waiter: asyncio.Future[None] | None = None

    def put(self, event: RunEvent) -> None:
        """Deliver an event (never blocks the publisher)."""
        if self._state != "open":
            return
        if len(self._queue) >= self._maxsize:
            self._state = "overflowed"
            self._queue.clear()
        else:
            self._queue.append(event)
        self._wake()

    async def get_batch(self) -> list[RunEvent]:
        """Every event buffered now (at least one), waiting if there is none."""
        while not self._queue:
            await self._wait()
        batch, self._queue = self._queue, []
        return batch

    async def get(self) -> RunEvent:
        """The next event (used where events are consumed one at a time)."""
        while not self._queue:
            await self._wait()
        return self._queue.pop(0)

    async def _wait(self) -> None:
        self._raise_if_ended()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _raise_if_ended(self) -> None:
        if self._state == "overflowed":
            raise SlowConsumerError()
        if self._state == "closed":
            raise SubscriptionClosedError()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def overflowed(self) -> bool:
        return self._state == "overflowed"

    def close(self) -> None:
        """Stop delivery and detach from the broker; a waiting reader gets SubscriptionClosedError."""
        if self._state == "closed":
            return
        self._state = "closed"
        self._queue.clear()
        self._wake()
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None
