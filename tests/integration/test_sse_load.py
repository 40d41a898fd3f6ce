"""500 server-sent event streams at once, each its own question on its own session, against one in-process
uvicorn server: every one ends with one complete answer and contiguous ids."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.support import KEY_A, LiveServer, live_server, make_settings

pytestmark = pytest.mark.integration

STREAMS = 500
CHUNKS = 20
TIME_BOUND_S = 60.0


async def converse(client: httpx.AsyncClient, i: int) -> str | None:
    """One stream asks one question; returns what went wrong, or None."""
    session_id = f"sse-load-{i}"
    frames = []
    try:
        async with client.stream("POST", "/api/v1/chat/stream",
                                 json={"message": f"question number {i}", "session_id": session_id}) as r:
            if r.status_code != 200:
                return f"{session_id}: status {r.status_code} {(await r.aread())[:200]!r}"
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    frames.append(json.loads(line[6:]))
    except Exception as exc:
        return f"{session_id}: {type(exc).__name__}: {exc}"
    types = [f["event_type"] for f in frames]
    seqs = [f["seq"] for f in frames]
    problems = []
    if types.count("done") != 1 or types[-1] != "done" or frames[-1]["data"]["status"] != "completed":
        problems.append(f"ends {types[-3:]}")
    if types[0] != "run_started" or types.count("text") != CHUNKS + 1:
        problems.append(f"events {types}")
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append(f"ids not contiguous: {seqs}")
    if any(f["session_id"] != session_id for f in frames):
        problems.append("an event of another session")
    return f"{session_id}: " + "; ".join(problems) if problems else None


async def peak_streams(srv: LiveServer, done: asyncio.Event) -> int:
    """The most streams open at once (the capacity slots in use), sampled until `done`."""
    capacity, peak = srv.container.capacity(), 0
    while not done.is_set():
        peak = max(peak, capacity.in_use)
        await asyncio.sleep(0.01)
    return peak


async def test_500_concurrent_sse_streams_each_get_one_complete_answer_with_contiguous_ids() -> None:
    settings = make_settings(max_connections=1000, demo_chunks=CHUNKS, demo_chunk_delay_ms=100)
    limits = httpx.Limits(max_connections=STREAMS, max_keepalive_connections=0)
    async with live_server(settings, backlog=4096) as srv, httpx.AsyncClient(
        base_url=srv.base_url, headers={"X-API-Key": KEY_A}, timeout=TIME_BOUND_S, limits=limits,
    ) as client:
        started = time.monotonic()
        finished = asyncio.Event()
        sampler = asyncio.create_task(peak_streams(srv, finished))
        async with asyncio.timeout(TIME_BOUND_S):
            results = await asyncio.gather(*(converse(client, i) for i in range(STREAMS)))
        finished.set()
        peak = await sampler
        elapsed = time.monotonic() - started
    failures = [r for r in results if r is not None]
    assert failures == [], f"{len(failures)} of {STREAMS} failed, e.g. {failures[:5]}"
    assert peak >= STREAMS * 0.8, f"only {peak} streams were open at once"
    assert elapsed < TIME_BOUND_S
