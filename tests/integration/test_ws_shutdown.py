"""SIGTERM to a real `dataagent-server` process: running answers are cancelled and persisted, then it exits.

PROTOCOL.md: running answers are cancelled and persisted (status `cancelled`, reason `shutdown`); sockets close
with 1012 (service restart) or 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.support.polling import eventually, wait_for_active_run
from tests.support.processes import ServerProcess, cli_command, server_env, spawn, wait_healthy
from tests.support.servers import free_port
from tests.support.wsclient import raw_ws_handshake, send_masked_text, ws_connect_to

pytestmark = pytest.mark.integration

KEY = "shutdown-key-0123456789"
EXIT_WITHIN_S = 5.0


@contextlib.contextmanager
def long_answer_server() -> Iterator[ServerProcess]:
    """A server whose demo answers take 2000 chunks of 10 ms (20 s): still running when SIGTERM comes."""
    port = free_port()
    server = spawn(
        cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        server_env(DATAAGENT_API_KEYS=f"demo:{KEY}", DATAAGENT_DEMO_CHUNKS="2000",
                   DATAAGENT_DEMO_CHUNK_DELAY_MS="10"),
        port,
    )
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop(timeout=5)


def wait_exit(server: ServerProcess, timeout: float) -> int | None:
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None



async def test_sigterm_ends_a_streaming_socket_run_with_a_persisted_cancelled_done_then_closes_1012() -> None:
    with long_answer_server() as server:
        async with ws_connect_to(server.base_url, "bye-ws", KEY) as ws:
            assert (await ws.recv())["event_type"] == "connected"
            await ws.send("chat", message="a very long answer please")
            texts = 0
            while texts < 3:
                frame = await ws.recv()
                texts += frame["event_type"] == "text"
            server.proc.send_signal(signal.SIGTERM)
            frames = await ws.until("done", timeout=EXIT_WITHIN_S)
            done = frames[-1]["data"]
            assert done["status"] == "cancelled" and done["cancelled"] is True
            assert done["reason"] == "shutdown"
            assert done["message_id"]  # the partial answer was persisted before `done`
            assert [f["event_type"] for f in frames].count("done") == 1
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv(timeout=EXIT_WITHIN_S)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code in (1012, 1001)
        assert await asyncio.to_thread(wait_exit, server, EXIT_WITHIN_S) is not None, "the server did not exit"


async def test_sigterm_makes_an_in_flight_sync_rest_chat_return_cancelled_instead_of_hanging() -> None:
    with long_answer_server() as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers={"X-API-Key": KEY}, timeout=30) as c:
            chat = asyncio.create_task(c.post("/api/v1/chat", json={"message": "long", "session_id": "bye-rest"}))
            await wait_for_active_run(c, "bye-rest")
            async with ws_connect_to(server.base_url, "bye-rest", KEY) as watcher:  # some text to keep
                await watcher.until("text")
            server.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            r = await asyncio.wait_for(chat, EXIT_WITHIN_S)
            assert time.monotonic() - started < EXIT_WITHIN_S
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "cancelled"
        assert body["message_id"]
        assert 0 < len(body["content"])
        done = body["events"][-1]
        assert done["event_type"] == "done"
        assert done["data"]["reason"] == "shutdown" and done["data"]["message_id"] == body["message_id"]
        assert await asyncio.to_thread(wait_exit, server, EXIT_WITHIN_S) is not None, "the server did not exit"


async def test_sigterm_that_finds_uvicorns_tick_due_still_sends_done_before_closing_the_socket() -> None:
    # A process that is not scheduled for 0.3 s (a throttled container, a loaded host) wakes up with uvicorn's
    # 0.1 s tick overdue: the signal handler and that tick then run in the same event-loop iteration.
    with long_answer_server() as server:
        async with ws_connect_to(server.base_url, "paused", KEY) as ws:
            assert (await ws.recv())["event_type"] == "connected"
            await ws.send("chat", message="a very long answer please")
            await ws.until("text")
            server.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.3)  # kept: the scenario is a process not scheduled for 0.3 s
            server.proc.send_signal(signal.SIGTERM)
            server.proc.send_signal(signal.SIGCONT)
            frames = await ws.until("done", timeout=EXIT_WITHIN_S)
            assert frames[-1]["data"]["reason"] == "shutdown"


async def test_the_server_exits_with_code_0_after_sigterm() -> None:
    with long_answer_server() as server:
        server.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(wait_exit, server, EXIT_WITHIN_S) == 0


async def test_a_socket_that_never_reads_does_not_keep_the_server_from_exiting_on_sigterm() -> None:
    port = free_port()
    server = spawn(
        cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        server_env(DATAAGENT_API_KEYS=f"demo:{KEY}", DATAAGENT_DEMO_CHUNKS="30000", DATAAGENT_DEMO_CHUNK_DELAY_MS="0",
                   DATAAGENT_WS_SEND_BUFFER="200"),
        port,
    )
    try:
        await asyncio.to_thread(wait_healthy, server)
        sock, _ = await asyncio.to_thread(raw_ws_handshake, "127.0.0.1", port, f"/ws/chat/stuck?api_key={KEY}", 4096)
        with contextlib.closing(sock):
            send_masked_text(sock, '{"type": "chat", "payload": {"message": "a long answer"}}')
            async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as c:

                async def answer_ended() -> bool:
                    return not (await c.get("/api/v1/health")).json()["active_runs"]

                await eventually(answer_ended, timeout=10, interval=0.05)
            # the answer has ended; the socket read nothing of it
            server.proc.send_signal(signal.SIGTERM)
            returncode = await asyncio.to_thread(wait_exit, server, 2 * EXIT_WITHIN_S)
        assert returncode is not None, "the server still runs 10 s after SIGTERM"
    finally:
        server.stop(signal.SIGKILL, timeout=5)
