"""An API key passed as `?api_key=` to GET /sessions/{id}/stream (as a browser EventSource must) never reaches the
output of a real `dataagent-server`, even at log level `trace`, where uvicorn logs each request's scope."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.support import cli_command, free_port, server_env, spawn, wait_healthy

pytestmark = pytest.mark.integration

SECRET = "SSESECRETKEY4242"
WRONG = "SSEWRONGKEY1717"


async def test_neither_a_valid_nor_a_wrong_key_in_the_stream_query_appears_in_the_server_output() -> None:
    port = free_port()
    server = spawn(
        cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "trace"],
        server_env(DATAAGENT_API_KEYS=f"demo:{SECRET}", DATAAGENT_DEMO_CHUNKS="3", DATAAGENT_DEMO_CHUNK_DELAY_MS="1"),
        port,
    )
    try:
        await asyncio.to_thread(wait_healthy, server)
        async with server.client(SECRET) as c:
            assert (await c.post("/api/v1/chat", json={"message": "hi", "session_id": "logged"})).status_code == 200
        async with server.client(None) as anonymous:
            async with anonymous.stream("GET", "/api/v1/sessions/logged/stream",
                                        params={"after_seq": 1, "api_key": SECRET}) as streamed:
                assert streamed.status_code == 200
                lines = streamed.aiter_lines()
                assert await anext(lines) == "event: connected"  # then the client leaves
            refused = await anonymous.get("/api/v1/sessions/logged/stream", params={"api_key": WRONG})
            assert refused.status_code == 401
    finally:
        server.stop(signal.SIGTERM, timeout=10)
    output = server.text()
    assert SECRET not in output and WRONG not in output
    assert "api_key=***" in output, output[-3000:]  # the requests were logged, with the key filtered out
