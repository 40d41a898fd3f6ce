"""Test support: a real uvicorn server on 127.0.0.1 (in this process, or as a subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import uvicorn
import websockets
from dependency_injector import providers
from fastapi import FastAPI

from dataagent.entrypoints.app import create_app
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.settings import Settings

KEY_A = "key-alpha-0123456789"
KEY_B = "key-bravo-9876543210"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: two named keys, a fast demo engine, nothing read from the environment."""
    values: dict[str, Any] = {
        "api_keys": [f"alice:{KEY_A}", f"bob:{KEY_B}"],
        "demo_chunks": 5,
        "demo_chunk_delay_ms": 1,
        "host": "127.0.0.1",
        "port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class LiveServer:
    app: FastAPI
    base_url: str
    server: uvicorn.Server

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    @property
    def container(self) -> Any:
        return self.app.state.container

    def client(self, key: str | None = KEY_A, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings | None = None, engine: Any = None, **uvicorn_options: Any
) -> AsyncIterator[LiveServer]:
    """Run the real app under uvicorn on a free 127.0.0.1 port inside the test's event loop.

    `engine` replaces the configured agent engine (through the container's override, no patching).
    """
    settings = settings or make_settings()
    container = Container(settings=settings)
    if engine is not None:
        container.engine.override(providers.Object(engine))
    app = create_app(settings, container)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on",
        ws_max_size=settings.max_frame_bytes, **uvicorn_options,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app, f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server started by a real command line, with its output captured."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str]
    reader: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def client(self, key: str | None = KEY_A, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def spawn(args: list[str], env: dict[str, str], port: int) -> ServerProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAGENT_")}
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return ServerProcess(proc, port, output, reader)


def wait_healthy(server: ServerProcess, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited {server.proc.returncode}:\n{server.text()}")
        try:
            if httpx.get(server.base_url + "/api/v1/health", timeout=1).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.text()}")


def cli_command() -> list[str]:
    return [sys.executable, "-m", "dataagent.entrypoints.cli"]


class WsClient:
    """A thin wrapper of a `websockets` client connection speaking PROTOCOL.md frames."""

    def __init__(self, connection: Any) -> None:
        self.conn = connection
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame_type: str, **payload: Any) -> None:
        await self.conn.send(orjson.dumps({"type": frame_type, "payload": payload}).decode())

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = orjson.loads(await asyncio.wait_for(self.conn.recv(), timeout))
        self.frames.append(frame)
        return dict(frame)

    async def until(self, event_type: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Frames received up to and including the next `event_type` frame."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                out.append(frame)
                if frame["event_type"] == event_type:
                    return out


@contextlib.asynccontextmanager
async def ws_connect(
    srv: LiveServer | ServerProcess, session_id: str, key: str | None = KEY_A, query: str = "", **kwargs: Any
) -> AsyncIterator[WsClient]:
    """A socket on /ws/chat/{session_id} with the key as `?api_key=`; the `connected` frame is left unread."""
    params = [p for p in (f"api_key={key}" if key else "", query) if p]
    url = f"{srv.ws_url}/ws/chat/{session_id}" + ("?" + "&".join(params) if params else "")
    async with websockets.connect(url, open_timeout=10, **kwargs) as conn:
        yield WsClient(conn)
