"""Waiting for a condition by polling it, never by sleeping a fixed time and hoping."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from tests.support.processes import ServerProcess
    from tests.support.servers import LiveServer

T = TypeVar("T")


async def eventually(
    condition: Callable[[], T | Awaitable[T]], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> T:
    """Call `condition` (plain or async) every `interval` s until it returns a truthy value, and return that.

    AssertionError naming `what` if it is still falsy after `timeout` s; its exceptions propagate.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]  # awaited above when it was awaitable
        if loop.time() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what or getattr(condition, '__name__', condition)}")
        await asyncio.sleep(interval)


async def connections(srv: LiveServer | str) -> int:
    """`connections` of GET /api/v1/health: open sockets plus in-flight REST chats."""
    base_url = srv if isinstance(srv, str) else srv.base_url
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        return int((await c.get("/api/v1/health")).json()["connections"])


async def wait_for_connections(srv: LiveServer | str, expected: int, timeout: float = 3.0) -> int:
    """Poll health until `connections` equals `expected` (or the time is up); return the last value seen."""
    seen: list[int] = []

    async def reached() -> bool:
        seen.append(await connections(srv))
        return seen[-1] == expected

    try:
        await eventually(reached, timeout, interval=0.05)
    except AssertionError:
        pass  # the caller asserts on the value, which says more
    return seen[-1]


async def wait_for_health(srv: LiveServer | ServerProcess, status: int, timeout: float = 15) -> dict[str, Any]:
    """Poll GET /api/v1/health (no key) until it answers `status`; its body."""
    async with srv.client(None) as anonymous:
        responses: list[httpx.Response] = []

        async def answers() -> bool:
            responses.append(await anonymous.get("/api/v1/health"))
            return responses[-1].status_code == status

        try:
            await eventually(answers, timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(responses[-1].text) from None
        return dict(responses[-1].json())


async def wait_for_active_run(client: httpx.AsyncClient, session_id: str, timeout: float = 5.0) -> str:
    """Poll the session until it has an active run; that run's id."""

    async def active_run() -> str | None:
        r = await client.get(f"/api/v1/sessions/{session_id}")
        return str(r.json()["active_run_id"]) if r.status_code == 200 and r.json()["active_run_id"] else None

    return await eventually(active_run, timeout, what=f"an active run in {session_id}")


async def wait_for_text(srv: LiveServer, client: httpx.AsyncClient, session_id: str, timeout: float = 5.0) -> str:
    """Poll until the session's running answer (in `srv`'s process) has produced some text; that text."""
    run_id = await wait_for_active_run(client, session_id, timeout)
    runs = srv.container.run_manager()
    return await eventually(lambda: runs.live_content(run_id), timeout, what=f"text of the answer in {session_id}")
