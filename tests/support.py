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
        "agent": "demo",  # not `auto`: an OPENAI_API_KEY in the environment must not reach a real LLM
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
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAGENT_", "OPENAI_"))}
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


# -- WebSocket operations helpers (capacity, liveness, backpressure, shutdown) ---------------------------------


async def connections(srv: LiveServer | str) -> int:
    """`connections` of GET /api/v1/health: open sockets plus in-flight REST chats."""
    base_url = srv if isinstance(srv, str) else srv.base_url
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as c:
        return int((await c.get("/api/v1/health")).json()["connections"])


async def wait_for_connections(srv: LiveServer | str, expected: int, timeout: float = 3.0) -> int:
    """Poll health until `connections` equals `expected` (or the time is up); return the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await connections(srv)
        if seen == expected or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


async def refusal(
    srv: LiveServer, session_id: str, key: str | None = KEY_A, query: str = ""
) -> tuple[int | None, list[dict[str, Any]]]:
    """Open a socket, read until the server closes it: (close code, frames seen before the close).

    The close code is None if the server sent a `connected` frame (the socket was admitted); the socket is
    then closed by the client.
    """
    async with ws_connect(srv, session_id, key, query) as ws:
        frames: list[dict[str, Any]] = []
        try:
            while True:
                frame = await ws.recv(5)
                frames.append(frame)
                if frame["event_type"] == "connected":
                    return None, frames
        except websockets.ConnectionClosed as exc:
            return (exc.rcvd.code if exc.rcvd else None), frames


def server_env(**env: str) -> dict[str, str]:
    """Environment for a subprocess server that imports the same `dataagent` package as this test process."""
    import dataagent

    src = os.path.dirname(os.path.dirname(os.path.abspath(dataagent.__file__)))
    paths = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return {"PYTHONPATH": os.pathsep.join(paths), **env}


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def raw_ws_handshake(
    host: str, port: int, path: str, rcvbuf: int | None = None, timeout: float = 5.0
) -> tuple[socket.socket, bytes]:
    """A WebSocket opening handshake by hand on a plain TCP socket: (the socket, bytes read past the 101 head).

    `rcvbuf` sets SO_RCVBUF before connecting, which bounds the TCP window the server may fill.
    """
    import base64

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"handshake refused: {head!r}")
    return sock, rest


def parse_ws_frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """One unmasked server frame from the front of `buffer`: (opcode, payload, rest), or None if incomplete."""
    if len(buffer) < 2:
        return None
    opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
    if length == 126:
        if len(buffer) < 4:
            return None
        length, offset = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        if len(buffer) < 10:
            return None
        length, offset = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < offset + length:
        return None
    return opcode, buffer[offset : offset + length], buffer[offset + length :]


def send_masked_text(sock: socket.socket, text: str) -> None:
    """Send one text frame from a client (clients must mask their frames)."""
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


@contextlib.asynccontextmanager
async def ws_connect_to(
    base_url: str, session_id: str, key: str | None, query: str = "", **kwargs: Any
) -> AsyncIterator[WsClient]:
    """Like `ws_connect`, for any server by its base URL (a subprocess server's `base_url`)."""
    params = [p for p in (f"api_key={key}" if key else "", query) if p]
    url = "ws" + base_url.removeprefix("http") + f"/ws/chat/{session_id}" + ("?" + "&".join(params) if params else "")
    async with websockets.connect(url, open_timeout=10, **kwargs) as conn:
        yield WsClient(conn)


async def wait_for_health(srv: LiveServer | ServerProcess, status: int, timeout: float = 15) -> dict[str, Any]:
    """Poll GET /api/v1/health (no key) until it answers `status`; its body."""
    deadline = time.monotonic() + timeout
    async with srv.client(None) as anonymous:
        while True:
            r = await anonymous.get("/api/v1/health")
            if r.status_code == status or time.monotonic() > deadline:
                assert r.status_code == status, r.text
                return dict(r.json())
            await asyncio.sleep(0.1)


async def wait_for_active_run(client: httpx.AsyncClient, session_id: str, timeout: float = 5.0) -> str:
    """Poll the session until it has an active run; that run's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get(f"/api/v1/sessions/{session_id}")
        if r.status_code == 200 and r.json()["active_run_id"]:
            return str(r.json()["active_run_id"])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no active run appeared in {session_id}")
