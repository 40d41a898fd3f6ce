"""The WebSocket send watchdog: drops sockets whose send has been blocked too long."""

import asyncio
import logging
import time
from typing import Protocol

from dataagent.application.tasks import stop_tasks

log = logging.getLogger("dataagent.ws")


class _Timeouts(Protocol):
    @property
    def send_timeout_s(self) -> float: ...


class Watched(Protocol):
    """What the watchdog needs of a socket (websocket.connection.Connection)."""

    @property
    def sid(self) -> str: ...

    @property
    def send_started(self) -> float | None:
        """While a send is in progress: when it began."""

    @property
    def settings(self) -> _Timeouts: ...

    def drop(self) -> None: ...


class SendWatchdog:
    """Drops sockets whose send has been blocked too long (the peer reads nothing, not even pings).

    A timer per send would cost ~10% of the CPU when streaming; one task checks every open socket each second.
    """

    def __init__(self) -> None:
        self._connections: set[Watched] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, connection: Watched) -> None:
        self._connections.add(connection)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-send-watchdog")

    def forget(self, connection: Watched) -> None:
        self._connections.discard(connection)

    async def close(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    async def _run(self) -> None:
        while self._connections:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for connection in list(self._connections):
                started = connection.send_started
                if started is not None and now - started > connection.settings.send_timeout_s:
                    log.info("session %s: a send blocked %.0f s, the peer is gone; dropping it",
                             connection.sid, now - started)
                    self._connections.discard(connection)
                    connection.drop()
