"""Slow headers: connections trickling a request head are closed after DATAAGENT_HEADER_TIMEOUT, connections past
DATAAGENT_MAX_HTTP_CONNECTIONS get 503, in every start form (in process, dataagent-server, --workers, uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.integration.test_cli import PYTHONPATH, running, uvicorn_command
from tests.integration.test_scale_out import delete_keys, new_prefix, server_env
from tests.mysqldb import fresh_database
from tests.services import REDIS_PORT
from tests.support import ServerProcess, cli_command, free_port, live_server, make_settings, wait_healthy

pytestmark = pytest.mark.integration

TRICKLING = 50
LIMIT = 20
HEADER_TIMEOUT_S = 1.0
LINE_EVERY_S = 0.3
BOUND = {"HEADER_TIMEOUT": str(HEADER_TIMEOUT_S), "MAX_HTTP_CONNECTIONS": str(LIMIT)}
PROTOCOL = "dataagent.adapters.http.protocols:BoundedHttpProtocol"  # httptools here
H11 = "dataagent.adapters.http.protocols:BoundedH11Protocol"


async def trickle(port: int, opened: asyncio.Event | None = None) -> tuple[float, bytes]:
    """Open a connection and send a request head one header line at a time, never finishing it, until the
    server closes the connection: (seconds it stayed open, what the server sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
    if opened is not None:
        opened.set()
    received = b""
    try:
        for n in range(int(10 * HEADER_TIMEOUT_S / LINE_EVERY_S)):  # far longer than the timeout
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(reader.read(1024), LINE_EVERY_S)
                received += chunk
                if not chunk:
                    break
            writer.write(f"X-Slow-{n}: still sending\r\n".encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started, received


async def trickling_connections_are_closed_and_extra_ones_refused(port: int, base_url: str) -> None:
    opened = [asyncio.Event() for _ in range(TRICKLING)]
    tasks = [asyncio.create_task(trickle(port, event)) for event in opened]
    # all connected before the health request: the server accepts connections in the order they came
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 5)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        refused = await c.get("/api/v1/health")
        assert refused.status_code == 503, refused.text  # past the connection limit
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10 * HEADER_TIMEOUT_S)
        for seconds, received in results:
            assert HEADER_TIMEOUT_S * 0.8 < seconds < HEADER_TIMEOUT_S + 2, seconds
            assert received.startswith(b"HTTP/1.1 408") or received == b"", received
        assert (await c.get("/api/v1/health")).status_code == 200  # once they are gone


@contextlib.asynccontextmanager
async def in_process(protocol: str = PROTOCOL) -> AsyncIterator[tuple[int, str]]:
    settings = make_settings(header_timeout=HEADER_TIMEOUT_S, max_http_connections=LIMIT)
    async with live_server(settings, http=protocol) as srv:
        yield int(srv.base_url.rsplit(":", 1)[1]), srv.base_url


@pytest.mark.parametrize("protocol", [PROTOCOL, H11])
async def test_in_process_trickling_heads_are_closed_after_the_timeout_and_the_limit_refuses_503(protocol: str) -> None:
    async with in_process(protocol) as (port, base_url):
        await trickling_connections_are_closed_and_extra_ones_refused(port, base_url)


@pytest.mark.parametrize("protocol", [PROTOCOL, H11])
async def test_a_head_larger_than_the_bound_is_refused_431(protocol: str) -> None:
    async with in_process(protocol) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        answer = await asyncio.wait_for(reader.read(1024), 5)
        assert answer.startswith(b"HTTP/1.1 431" if protocol == PROTOCOL else b"HTTP/1.1 400"), answer
        writer.close()


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], port: int) -> Iterator[ServerProcess]:
    with running(args, env, port) as server:
        wait_healthy(server)
        yield server


@pytest.mark.parametrize("form", ["dataagent-server", "uvicorn --http"])
async def test_every_command_line_closes_trickling_heads_and_refuses_past_the_limit(form: str) -> None:
    port = free_port()
    env = {"PYTHONPATH": PYTHONPATH, "DATAAGENT_API_KEYS": "k"} | {f"DATAAGENT_{k}": v for k, v in BOUND.items()}
    args = (cli_command() + ["--host", "127.0.0.1", "--port", str(port)] if form == "dataagent-server"
            else uvicorn_command(port, "--http", PROTOCOL))
    with started(args, env, port) as server:
        await trickling_connections_are_closed_and_extra_ones_refused(port, server.base_url)


@pytest.mark.mysql
@pytest.mark.redis
async def test_several_workers_close_trickling_heads_too() -> None:
    port, prefix = free_port(), new_prefix()
    async with fresh_database() as db:
        env = server_env(db, REDIS_PORT, prefix, **BOUND)
        try:
            args = cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
            with started(args, env, port):
                results = await asyncio.gather(*(trickle(port) for _ in range(TRICKLING)))
                assert all(seconds < HEADER_TIMEOUT_S + 2 for seconds, _ in results), results
        finally:
            delete_keys(prefix)
