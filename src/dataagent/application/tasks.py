"""Stopping background tasks: one way for every loop the process runs."""

from __future__ import annotations

import asyncio


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel the tasks and wait until each has ended; raise the first error one of them ended with.

    Not `with suppress(CancelledError): await task`: that also swallows a cancel of the caller itself (a
    shutdown step that overran its bound would then not stop)."""
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    for result in await asyncio.gather(*live, return_exceptions=True):
        if isinstance(result, Exception):
            raise result
