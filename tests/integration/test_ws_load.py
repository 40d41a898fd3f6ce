"""300 sockets at once, each on its own session, against one in-process uvicorn server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support import LiveServer, connections, live_server, make_settings, wait_for_connections, ws_connect

pytestmark = pytest.mark.integration

SOCKETS = 300
CHUNKS = 20
TIME_BOUND_S = 60.0


class Gate:
    """Holds every socket after its `connected` frame until the test opens it: all are open at once."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.open = asyncio.Event()

    async def pass_(self) -> None:
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_in.set()
        await self.open.wait()


async def converse(srv: LiveServer, i: int, gate: Gate) -> str | None:
    """One socket asks one question; returns what went wrong, or None."""
    session_id = f"load-{i}"
    try:
        async with ws_connect(srv, session_id) as ws:
            connected = await ws.recv(30)
            if connected["event_type"] != "connected":
                return f"{session_id}: first frame {connected['event_type']}"
            await gate.pass_()
            await ws.send("chat", message=f"question number {i}")
            frames = await ws.until("done", timeout=TIME_BOUND_S)
            # a pong answers after every event already sent to this socket: nothing may follow `done`
            await ws.send("ping")
            frames += (await ws.until("pong", timeout=10))[:-1]
    except Exception as exc:
        return f"{session_id}: {type(exc).__name__}: {exc}"
    types = [f["event_type"] for f in frames]
    seqs = [f["seq"] for f in frames]
    problems = []
    if types.count("done") != 1 or types[-1] != "done":
        problems.append(f"done events at {[k for k, t in enumerate(types) if t == 'done']} of {len(types)}")
    elif frames[-1]["data"]["status"] != "completed":
        problems.append(f"status {frames[-1]['data']['status']}")
    if types[0] != "run_started" or types.count("text") != CHUNKS + 1:
        problems.append(f"events {types}")
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append(f"seqs not contiguous: {seqs}")
    if any(f["session_id"] != session_id for f in frames):
        problems.append("an event of another session")
    return f"{session_id}: " + "; ".join(problems) if problems else None


async def test_300_concurrent_sockets_each_get_one_complete_answer_with_contiguous_seqs() -> None:
    settings = make_settings(max_connections=1000, demo_chunks=CHUNKS, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv:
        gate = Gate(SOCKETS)
        started = time.monotonic()
        async with asyncio.timeout(TIME_BOUND_S):
            everyone = asyncio.gather(*(converse(srv, i, gate) for i in range(SOCKETS)))
            try:
                await asyncio.wait_for(gate.all_in.wait(), TIME_BOUND_S / 2)
                open_at_once = await connections(srv)
            except TimeoutError:
                open_at_once = gate.arrived
            finally:
                gate.open.set()  # also when some never arrived: their failures are reported below
            results = await everyone
        elapsed = time.monotonic() - started
        failures = [r for r in results if r is not None]
        assert len(failures) == 0, f"{len(failures)} of {SOCKETS} failed, e.g. {failures[:5]}"
        assert open_at_once == SOCKETS
        assert elapsed < TIME_BOUND_S
        assert await wait_for_connections(srv, 0) == 0
        async with srv.client() as c:
            assert (await c.get("/api/v1/sessions", params={"limit": 1})).json()["total"] == SOCKETS
            assert (await c.get("/api/v1/health")).json()["active_runs"] == 0
        assert await connections(srv) == 0
