"""The per-key limit scenarios, run on one server and on two processes sharing Redis (test_rate_limits*.py):
each step goes to a server of the list in turn, so with two the counts must be shared to hold."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support import KEY_A, KEY_B, ws_connect
from tests.support.polling import eventually

Server = Any  # a LiveServer or a ServerProcess: base_url, ws_url, client(key)


async def ask_rest(srv: Server, sid: str, key: str = KEY_A, wait: bool = True) -> httpx.Response:
    async with srv.client(key) as c:
        return await c.post("/api/v1/chat", json={"message": "hi", "session_id": sid, "wait": wait})


async def ask_sse(srv: Server, sid: str, key: str = KEY_A) -> httpx.Response:
    """POST /chat/stream, read to its end (an accepted question streams until its `done`)."""
    async with srv.client(key) as c:
        return await c.post("/api/v1/chat/stream", json={"message": "hi", "session_id": sid})


async def ask_ws(srv: Server, sid: str, key: str = KEY_A, wait: bool = True) -> dict[str, Any]:
    """A `chat` frame on a new socket: the refusal's `error` frame, or the run's `done` (`wait`) / `run_started`."""
    async with ws_connect(srv, sid, key=key) as ws:
        assert (await ws.recv())["event_type"] == "connected"
        await ws.send("chat", message="hi")
        first = await ws.recv()
        if first["event_type"] == "error" or not wait:
            return first
        return (await ws.until("done"))[-1]


def assert_refused_rest(r: httpx.Response, kind: str, limit: int) -> int:
    """A 429 rate_limited with its headers; the seconds it says to wait."""
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["error_code"] == "rate_limited" and body["details"]["kind"] == kind, body
    assert r.headers["RateLimit-Limit"] == str(limit) and r.headers["RateLimit-Remaining"] == "0"
    retry = int(r.headers["Retry-After"])
    assert r.headers["RateLimit-Reset"] == str(retry) == str(body["details"]["reset"])
    assert body["details"] == {"kind": kind, "limit": limit, "remaining": 0, "reset": retry, "retry_after": retry}
    return retry


def assert_refused_ws(frame: dict[str, Any], kind: str, limit: int) -> None:
    assert frame["event_type"] == "error", frame
    data = frame["data"]
    assert data["error_code"] == "rate_limited" and data["recoverable"] is True, data
    details = data["details"]
    assert details["kind"] == kind and details["limit"] == limit and details["remaining"] == 0
    assert details["reset"] == details["retry_after"] >= 1


async def questions_past_the_rate_are_refused_until_the_window_resets(servers: list[Server], tag: str) -> None:
    """DATAAGENT_RATE_LIMIT=3/2second: three questions over REST, SSE and WebSocket, then each is refused on every
    server; another key is not; the window admits again once the first question is 2 s old, not before."""
    first, last = servers[0], servers[-1]
    started = time.monotonic()
    assert (await ask_rest(first, f"{tag}-r")).status_code == 200
    assert (await ask_sse(last, f"{tag}-e")).status_code == 200
    assert (await ask_ws(first, f"{tag}-w"))["data"]["status"] == "completed"
    retry = 0
    for srv in servers:
        retry = assert_refused_rest(await ask_rest(srv, f"{tag}-r2"), "questions", 3)
        assert 1 <= retry <= 2
        assert_refused_rest(await ask_sse(srv, f"{tag}-e2"), "questions", 3)
        assert_refused_ws(await ask_ws(srv, f"{tag}-w2"), "questions", 3)
    refused_at = time.monotonic()
    assert (await ask_rest(last, f"{tag}-bob", KEY_B)).status_code == 200  # another key: its own window

    async def admitted() -> bool:
        r = await ask_rest(last, f"{tag}-r3")
        assert r.status_code in (200, 429), r.text
        return r.status_code == 200

    await eventually(admitted, timeout=retry + 3, interval=0.1, what="the window's reset")
    assert time.monotonic() - started >= 1.9  # the window is 2 s from the first question: refused until then
    assert time.monotonic() - refused_at <= retry + 2.5  # and admitted about when Retry-After said (+ slack)


async def session_count(srv: Server) -> int:
    async with srv.client() as c:
        return int((await c.get("/api/v1/sessions")).json()["total"])


async def session_free(srv: Server, sid: str) -> bool:
    async with srv.client() as c:
        return (await c.get(f"/api/v1/sessions/{sid}")).json()["active_run_id"] is None


async def a_second_answer_is_refused_until_the_first_ends(servers: list[Server], tag: str) -> None:
    """DATAAGENT_MAX_RUNS_PER_KEY=1 and answers that last seconds: while one runs, a question in another session is
    refused on every server over REST, SSE and WebSocket; another key is not; the slot is free again as soon as
    the answer is cancelled (through another server), and when one completes."""
    first, last = servers[0], servers[-1]
    assert (await ask_rest(first, f"{tag}-1", wait=False)).status_code == 202
    sessions = await session_count(first)
    for srv in servers:
        assert assert_refused_rest(await ask_rest(srv, f"{tag}-2", wait=False), "runs", 1) == 1
        assert_refused_rest(await ask_sse(srv, f"{tag}-3"), "runs", 1)
        assert_refused_ws(await ask_ws(srv, f"{tag}-4"), "runs", 1)
        async with srv.client() as c:  # no session_id: refused before a new session is made
            assert_refused_rest(await c.post("/api/v1/chat", json={"message": "hi", "wait": False}), "runs", 1)
    assert await session_count(last) == sessions + 3  # -2, -3, -4: named, so kept (empty) for a retry
    assert (await ask_rest(last, f"{tag}-bob", KEY_B, wait=False)).status_code == 202
    async with last.client() as c:
        assert (await c.post(f"/api/v1/chat/{tag}-1/cancel")).status_code == 200
    # the cancel has returned: the answer is stored, its session and its slot free, wherever it ran
    assert (await ask_ws(last, f"{tag}-2", wait=False))["event_type"] == "run_started"
    await eventually(lambda: session_free(first, f"{tag}-2"), timeout=30, interval=0.1, what="a completed answer")
    assert (await ask_rest(first, f"{tag}-3", wait=False)).status_code == 202  # completed: freed too
    async with last.client() as c:  # nothing of the key runs after the scenario
        assert (await c.post(f"/api/v1/chat/{tag}-3/cancel")).status_code == 200
