"""A socket that never reads, against a real `dataagent-server` process: bounded memory, 4008, others unaffected.

The stalled client is a `websockets` client that stops calling recv(): with max_queue=1 it stops reading its
TCP socket, whose SO_RCVBUF is set small before connecting, so the server's kernel buffer and then its
bounded per-socket send buffer (DATAAGENT_WS_SEND_BUFFER=200) fill up. permessage-deflate is off: with it, the
repetitive frames compress so well that the kernel buffers absorb a whole answer and nothing overflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.support import (
    ServerProcess,
    cli_command,
    eventually,
    free_port,
    rss_mb,
    server_env,
    spawn,
    wait_for_active_run,
    wait_healthy,
    ws_connect_to,
)

pytestmark = pytest.mark.integration

KEY = "backpressure-key-0123456789"
CHUNKS = 100_000  # the demo answer's deltas: about 23 MB of frames, far more than the kernel buffers hold
SEND_BUFFER = 200
SHORT_QUESTION = "SELECT count(*) FROM customers"  # with DATAAGENT_HITL_POLICY=writes: no approval, 4 deltas
# Measured on the dev box (24 GB, loopback): the server's RSS grows by about 9 MB while this answer streams to
# a stalled socket (most of it is the answer itself: 100k deltas kept for the persisted message); with
# DATAAGENT_WS_SEND_BUFFER=1000000 (in effect unbounded) it grows by about 41 MB. 25 MB separates the two.
RSS_GROWTH_BOUND_MB = 25.0


@contextlib.contextmanager
def streaming_server() -> Iterator[ServerProcess]:
    port = free_port()
    server = spawn(
        cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        server_env(
            DATAAGENT_API_KEYS=f"demo:{KEY}", DATAAGENT_DEMO_CHUNKS=str(CHUNKS), DATAAGENT_DEMO_CHUNK_DELAY_MS="0",
            DATAAGENT_WS_SEND_BUFFER=str(SEND_BUFFER), DATAAGENT_HITL_POLICY="writes",
            # keepalive must not end the stalled socket before the send buffer does
            DATAAGENT_WS_PING_INTERVAL="60", DATAAGENT_WS_PING_TIMEOUT="60",
        ),
        port,
    )
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop(timeout=5)


def small_window_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


class RssSampler:
    """Samples a process's RSS every 20 ms in the background."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_mb(pid)
        self.peak = self.baseline
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.02)  # kept: the sampling period

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.peak = max(self.peak, rss_mb(self.pid))
        return self.peak - self.baseline


async def health(c: httpx.AsyncClient) -> dict[str, int]:
    return dict((await c.get("/api/v1/health")).json())



async def wait_until_idle(c: httpx.AsyncClient, timeout: float) -> None:
    async def idle() -> bool:
        return not (await health(c))["active_runs"]

    await eventually(idle, timeout, interval=0.05, what="the end of the long answer")


async def test_a_socket_that_never_reads_is_cut_off_with_4008_memory_stays_bounded_and_others_stream() -> None:
    with streaming_server() as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": KEY}, timeout=30) as c:
            warm = await c.post("/api/v1/chat", json={"message": SHORT_QUESTION, "session_id": "warm-up"})
            assert warm.json()["status"] == "completed"  # the SQL path is loaded before the baseline
            sampler = RssSampler(server.proc.pid)
            sock = small_window_socket(server.port)
            async with ws_connect_to(server.base_url, "stalled", KEY, sock=sock, max_queue=1,
                                     compression=None, ping_interval=None) as stalled:
                assert (await stalled.recv())["event_type"] == "connected"
                sampler.start()
                await stalled.send("chat", message="tell me everything")
                # from now on the stalled socket reads nothing until the answer has ended
                await wait_for_active_run(c, "stalled")
                started = time.monotonic()
                async with ws_connect_to(server.base_url, "normal", KEY) as normal:
                    assert (await normal.recv())["event_type"] == "connected"
                    await normal.send("chat", message=SHORT_QUESTION)
                    frames = await normal.until("done", timeout=5)
                    elapsed = time.monotonic() - started
                    long_answer_still_running = (await c.get("/api/v1/sessions/stalled")).json()["active_run_id"]
                assert long_answer_still_running, "the short question did not overlap the long answer"
                assert elapsed < 5
                assert frames[-1]["data"]["status"] == "completed"
                assert [f["event_type"] for f in frames][:3] == ["run_started", "tool_call", "tool_result"]
                seqs = [f["seq"] for f in frames]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

                await wait_until_idle(c, timeout=15)
                growth = await sampler.stop()
                assert growth < RSS_GROWTH_BOUND_MB, f"RSS grew by {growth:.1f} MB"
                # the stalled socket is still open at the TCP level, but it no longer holds a slot
                assert (await health(c))["connections"] == 0

                received = []
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        received.append(await stalled.recv(timeout=10))
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            assert "slow_consumer" in closed.value.rcvd.reason
            # what it got before the cut is an unbroken prefix of the answer, without its end
            assert received[0]["event_type"] == "run_started"
            run_seqs = [f["seq"] for f in received]
            assert run_seqs == list(range(run_seqs[0], run_seqs[0] + len(run_seqs)))
            assert "done" not in {f["event_type"] for f in received}
            assert len(received) < CHUNKS
            assert (await health(c))["connections"] == 0

            # the answer itself was not affected: it completed and was persisted whole
            history = (await c.get("/api/v1/sessions/stalled/messages")).json()["messages"]
            assert [m["role"] for m in history] == ["user", "assistant"]
            assert history[1]["status"] == "completed"
            assert history[1]["content"].count("tok") >= CHUNKS - 100
            # reconnecting after the cut: the events after it are no longer held, so the client must reload
            # (max_queue=None: the client keeps reading whatever else comes, so its close handshake is quick)
            async with ws_connect_to(server.base_url, "stalled", KEY, f"after_seq={run_seqs[-1]}",
                                     max_queue=None) as again:
                connected = await again.recv()
                assert connected["event_type"] == "connected" and connected["data"]["recovered"] is False
