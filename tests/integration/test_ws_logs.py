"""API keys passed as `?api_key=` on the WebSocket never reach the log of a real `dataagent-server` process.

uvicorn logs every WebSocket handshake with its path and query string ("WebSocket /ws/chat/...?api_key=...");
the server's log filter must rewrite the key to `api_key=***`.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
import websockets

from tests.support import cli_command, free_port, server_env, spawn, wait_healthy, ws_connect_to

pytestmark = pytest.mark.integration

SECRET = "SECRETKEY987"
WRONG = "WRONGSECRET555"


async def test_neither_a_valid_nor_a_wrong_websocket_key_appears_in_the_server_output() -> None:
    port = free_port()
    server = spawn(
        cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        server_env(DATAAGENT_API_KEYS=f"demo:{SECRET}", DATAAGENT_DEMO_CHUNKS="3", DATAAGENT_DEMO_CHUNK_DELAY_MS="1"),
        port,
    )
    try:
        await asyncio.to_thread(wait_healthy, server)
        async with ws_connect_to(server.base_url, "logged", SECRET) as ws:
            assert (await ws.recv())["event_type"] == "connected"
            await ws.send("chat", message="hello")
            assert (await ws.until("done"))[-1]["data"]["status"] == "completed"
        # the key after another parameter, and refused sockets (bad id, foreign key) are logged as well
        async with ws_connect_to(server.base_url, "logged", None, f"after_seq=0&api_key={SECRET}") as ws:
            assert (await ws.recv())["event_type"] == "connected"
        for session_id, key in (("bad%20id", SECRET), ("logged", WRONG)):
            async with ws_connect_to(server.base_url, session_id, key) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == (4400 if key == SECRET else 4401)
    finally:
        server.stop(signal.SIGTERM, timeout=10)
    output = server.text()
    assert SECRET not in output
    assert WRONG not in output
    assert output.count("api_key=***") >= 4, output  # the handshakes were logged, with the key filtered out
    assert "/ws/chat/logged?api_key=***" in output
