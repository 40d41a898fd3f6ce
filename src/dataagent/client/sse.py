"""Server-sent events read from an httpx response (the text/event-stream format, as PROTOCOL.md uses it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


async def sse_frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each event's `data` as the JSON frame it holds (comments and keep-alives skipped)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                frame = json.loads("\n".join(data))
                data = []
                if isinstance(frame, dict):
                    yield frame
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
