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


Item = RunEvent | str  # a session event, or a frame for this subscriber alone (already encoded)


class Subscription:
    """Replayed events, then live ones; when its bounded buffer overflows it fails with SlowConsumerError.

    `put_local` queues a frame meant for this subscriber only (a pong, an error about its own request),
    in order with the events and under the same bound.

    `direct`, when its reader sets it, takes an item at once while the reader is idle with nothing queued
    (it returns False to decline): a socket writes the frame in the publisher's own step instead of waking
    its writer task for it. Order holds: nothing is queued before it, and the reader is not sending.
    """

    __slots__ = (
        "replayed", "recovered", "floor", "_queue", "_maxsize", "_state", "_on_close", "_waiter", "on_overflow",
        "direct", "_error",
    )

    def __init__(
        self,
        replayed: list[RunEvent],
        recovered: bool,
        maxsize: int,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.replayed = replayed
        self.recovered = recovered
        self.floor = 0  # events numbered at or below it were replayed (or the client had them): not again
        self._queue: list[Item] = []
        self._maxsize = maxsize
        self._state = "open"  # open | overflowed | closed | failed
        self._error: DataAgentError | None = None
        self._on_close = on_close
        self._waiter: asyncio.Future[None] | None = None
        self.on_overflow: Callable[[], None] | None = None
        self.direct: Callable[[Item], bool] | None = None

    def put(self, event: Item) -> None:
        """Deliver an event (never blocks the publisher)."""
        if self._state != "open":
            return
        if self.direct is not None and self._waiter is not None and not self._queue and self.direct(event):
            return
        if len(self._queue) >= self._maxsize:
            self._state = "overflowed"
            self._queue.clear()
            if self.on_overflow is not None:
                self.on_overflow()
        else:
            self._queue.append(event)
        self._wake()

    put_local = put

    def discard_through(self, seq: int) -> None:
        """Drop queued events numbered `seq` or lower (they were replayed already); `floor` remembers it for
        brokers that deliver events from elsewhere later (they skip events at or below it)."""
        self.floor = max(self.floor, seq)
        self._queue = [e for e in self._queue if not isinstance(e, RunEvent) or e.seq > seq]

    async def get_batch(self) -> list[Item]:
        """Every event buffered now (at least one), waiting if there is none."""
        while not self._queue:
            await self._wait()
        batch, self._queue = self._queue, []
        return batch

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
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def overflowed(self) -> bool:
        return self._state == "overflowed"

    def fail(self, error: DataAgentError) -> None:
        """End delivery with `error` (the session is gone): what is queued is still read, then `get_batch`
        raises it; nothing more is taken. Detaches from the broker."""
        if self._state != "open":
            return
        self._state = "failed"
        self._error = error
        self._wake()
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

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
