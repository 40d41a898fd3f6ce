"""A counter of open sockets, event streams and in-flight REST chats, bounded by DATAAGENT_MAX_CONNECTIONS."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from dataagent.domain.errors import CapacityExceededError


class Capacity:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.in_use >= self.limit:
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        self.in_use = max(0, self.in_use - 1)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the duration of the block; CapacityExceededError if none is free."""
        if not self.try_acquire():
            raise CapacityExceededError()
        try:
            yield
        finally:
            self.release()
