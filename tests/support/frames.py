"""Reading what a server sent: event frames (WebSocket or SSE, the same JSON objects) and the stored answer."""

from __future__ import annotations

from typing import Any

import httpx


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [f["event_type"] for f in frames]


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["data"]["content"] for f in frames if f["event_type"] == "text")


def assert_contiguous(frames: list[dict[str, Any]]) -> None:
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


async def stored_answer(c: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    """The session's last assistant message, as GET /sessions/{sid}/messages lists it."""
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return dict([m for m in messages if m["role"] == "assistant"][-1])
