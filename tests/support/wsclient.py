"""WebSocket clients for tests: PROTOCOL.md frames over `websockets`, and a raw handshake and frames by hand."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import websockets

from tests.support.processes import ServerProcess
from tests.support.servers import KEY_A, LiveServer


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


def chat_url(ws_url: str, session_id: str, key: str | None, query: str = "") -> str:
    """/ws/chat/{session_id} on `ws_url`, with the key as `?api_key=` and any extra query."""
    params = [p for p in (f"api_key={key}" if key else "", query) if p]
    return f"{ws_url}/ws/chat/{session_id}" + ("?" + "&".join(params) if params else "")


@contextlib.asynccontextmanager
async def ws_connect(
    srv: LiveServer | ServerProcess, session_id: str, key: str | None = KEY_A, query: str = "", **kwargs: Any
) -> AsyncIterator[WsClient]:
    """A socket on /ws/chat/{session_id} with the key as `?api_key=`; the `connected` frame is left unread."""
    async with websockets.connect(chat_url(srv.ws_url, session_id, key, query), open_timeout=10, **kwargs) as conn:
        yield WsClient(conn)


@contextlib.asynccontextmanager
async def ws_connect_to(
    base_url: str, session_id: str, key: str | None, query: str = "", **kwargs: Any
) -> AsyncIterator[WsClient]:
    """Like `ws_connect`, for any server by its base URL (a subprocess server's `base_url`)."""
    url = chat_url("ws" + base_url.removeprefix("http"), session_id, key, query)
    async with websockets.connect(url, open_timeout=10, **kwargs) as conn:
        yield WsClient(conn)


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


def raw_ws_handshake(
    host: str, port: int, path: str, rcvbuf: int | None = None, timeout: float = 5.0
) -> tuple[socket.socket, bytes]:
    """A WebSocket opening handshake by hand on a plain TCP socket: (the socket, bytes read past the 101 head).

    `rcvbuf` sets SO_RCVBUF before connecting, which bounds the TCP window the server may fill.
    """
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
