"""DATAAGENT_RATE_LIMIT (`30/minute`, `3/2second`...): a moving window per key, on the `limits` library's storage,
in memory (one process) or in Redis (every worker and host that shares the broker)."""

from __future__ import annotations

import time
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from dataagent.application.limits import QuestionRate, Quota
from dataagent.domain.errors import BrokerUnavailableError


def memory_storage() -> Storage:
    return MemoryStorage()


def redis_storage(client: Any, prefix: str) -> Storage:
    """The windows in Redis, through the broker's own connection pool, under its key prefix."""
    return RedisStorage(
        "async+redis://", implementation="redispy", key_prefix=f"{prefix}rate", wrap_exceptions=True,
        connection_pool=client.connection_pool,
    )


class MovingWindowRate(QuestionRate):
    """At most `amount` questions per key in any window of the item's length (a moving window: no double burst at
    a window's edge)."""

    def __init__(self, storage: Storage, limit: str | RateLimitItem) -> None:
        self.item = parse(limit) if isinstance(limit, str) else limit
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, who: str) -> Quota:
        item = self.item
        try:
            allowed = await self._limiter.hit(item, who)
            reset_time, remaining = await self._limiter.get_window_stats(item, who)
        except StorageError as exc:
            raise BrokerUnavailableError(f"cannot count the question: {type(exc.storage_error).__name__}") from exc
        return Quota(allowed, item.amount, max(0, remaining), max(0.0, reset_time - time.time()))
