"""The Redis client (one pool per process, built by the container) and the link every module of the transport
uses: key names, this process's owner id, the Lua scripts by name, and calls whose failures become
BrokerUnavailableError."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Awaitable
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dataagent.domain.errors import BrokerUnavailableError

T = TypeVar("T")

PREFIX = "da:"
POOL_WAIT_S = 5.0  # how long a call waits for a free connection of the pool before it counts as a failure


def make_client(url: str, max_connections: int = 100) -> Any:
    """A redis.asyncio client on a BlockingConnectionPool of `max_connections`.

    A burst (hundreds of sockets opening or asking at once) waits for a free connection rather than failing:
    redis-py's default pool raises MaxConnectionsError at once when they are all busy. Few, quick retries: a
    dropped connection is retried, an outage fails fast (503, not a hung request). Typed Any: redis-py's return
    types are unions of bytes/str/None that do not follow decode_responses.
    """
    retry = Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_S,
        socket_timeout=5, socket_connect_timeout=2, health_check_interval=10, retry=retry,
    )
    return aioredis.Redis(connection_pool=pool, retry=retry)


async def close_client(client: Any) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()  # a pool handed to the client is not closed with it


def load_lua(name: str) -> str:
    """The text of `lua/<name>.lua` (package data)."""
    return resources.files("dataagent.adapters.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")


class Link:
    """What the transport's modules share: the client, the key prefix, this process's id, the call wrapper."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self.redis = client
        self.prefix = prefix
        where = client.connection_pool.connection_kwargs
        self.where = f"{where.get('host', where.get('path', '?'))}:{where.get('port', '')}/{where.get('db', 0)}"
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.connected_since: float | None = None  # monotonic time since which Redis calls succeed

    def k(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}:{name}" if name else f"{self.prefix}{kind}"

    def member(self, session_id: str, run_id: str, owner: str | None = None) -> str:
        """A lease's member in `leases`."""
        return f"{session_id}|{run_id}|{owner or self.owner}"

    def script(self, name: str) -> Any:
        return self.redis.register_script(load_lua(name))

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await a Redis call; a lost connection or a failed command becomes BrokerUnavailableError."""
        try:
            result = await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self.connected_since = None
            raise BrokerUnavailableError(
                f"cannot use Redis at {self.where}: unreachable ({type(exc).__name__})") from exc
        except RedisError as exc:
            raise BrokerUnavailableError(
                f"cannot use Redis at {self.where}: a command failed ({type(exc).__name__})") from exc
        if self.connected_since is None:
            self.connected_since = time.monotonic()
        return result
