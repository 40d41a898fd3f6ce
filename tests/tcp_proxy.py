"""A TCP proxy the test owns, between a server and MariaDB, to cut the database off without touching it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

COMMIT = b"\x03COMMIT"  # the COM_QUERY packet body of a COMMIT


@dataclass(eq=False)
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    swallowing: bool = False  # the server's replies are dropped (and the pair aborted once one arrives)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()

    def reset(self) -> None:
        """End both sides with a TCP RST (SO_LINGER 0), not a FIN."""
        for writer in (self.client, self.upstream):
            _reset(writer)


class TcpProxy:
    """127.0.0.1:<port> -> upstream. `cut()` aborts every connection and refuses new ones until `restore()`;
    `lose_reply_after(marker)` forwards the next client packet holding `marker` (e.g. a COMMIT) and then drops
    the connection before the server's answer reaches the client: the statement ran, the client never knows.
    `count(marker)` starts counting the client packets that hold `marker` (in `counted`).
    `reset()` is the "accepted then reset" outage: every open connection is reset (RST) at once, and every new
    one is accepted and then reset, in turn: right after the accept; after a cut-short greeting (the server's
    first packet truncated, as a reset stream leaves it: the driver parses a short packet); after the whole
    greeting. Until `restore()`."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.is_cut = False
        self.is_resetting = False
        self.resets = 0
        self.connections = 0
        self.replies_lost = 0
        self._marker: bytes | None = None
        self._counted_marker: bytes | None = None
        self.counted = 0
        self._pairs: set[_Pair] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_all()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def cut(self) -> None:
        self.is_cut = True
        self._abort_all()

    def reset(self) -> None:
        self.is_resetting = True
        for pair in list(self._pairs):
            pair.reset()
        self._pairs.clear()

    def restore(self) -> None:
        self.is_cut = False
        self.is_resetting = False

    def lose_reply_after(self, marker: bytes) -> None:
        self._marker = marker

    def count(self, marker: bytes) -> None:
        self._counted_marker, self.counted = marker, 0

    def _abort_all(self) -> None:
        for pair in list(self._pairs):
            pair.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        if self.is_resetting and self.resets % 3 == 0:
            self.resets += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        if self.is_resetting:
            self.resets += 1
            await _greet_then_reset(reader, writer, up_reader, up_writer, whole=self.resets % 3 == 0)
            return
        self.connections += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._to_server(reader, pair), self._to_client(up_reader, pair))
        finally:
            pair.abort()
            self._pairs.discard(pair)

    async def _to_server(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self._counted_marker is not None:
                    self.counted += data.count(self._counted_marker)
                if self._marker is not None and self._marker in data:
                    self._marker = None
                    pair.swallowing = True
                pair.upstream.write(data)
                await pair.upstream.drain()
        pair.abort()  # one side ended: end the other

    async def _to_client(self, reader: asyncio.StreamReader, pair: _Pair) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if pair.swallowing:
                    self.replies_lost += 1
                    pair.abort()
                    return
                pair.client.write(data)
                await pair.client.drain()
        pair.abort()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _greet_then_reset(
    reader: asyncio.StreamReader, client: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, whole: bool,
) -> None:
    """Forward the server's greeting (whole, or its first packet cut inside the thread id that follows the
    server's version string) to the client, then reset both."""
    with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        header = await asyncio.wait_for(up_reader.readexactly(4), 5)
        payload = await asyncio.wait_for(up_reader.readexactly(int.from_bytes(header[:3], "little")), 5)
        if not whole:
            payload = payload[: payload.find(b"\0", 1) + 3]
            header = len(payload).to_bytes(3, "little") + header[3:]
        client.write(header + payload)
        await client.drain()
        await asyncio.wait_for(reader.read(65536), 1)  # the client's answer (or its end): then the reset
    _reset(client)
    _reset(upstream)


class ThreadedTcpProxy:
    """A TcpProxy on an event loop of its own thread, for servers shared by several tests (each test has its
    own loop): `start()` / `close()`, and `cut()` / `restore()` from any thread."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._proxy = TcpProxy(upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def is_cut(self) -> bool:
        return self._proxy.is_cut

    def start(self) -> ThreadedTcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._proxy.__aenter__(), self._loop).result(10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._proxy.__aexit__(None, None, None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        self._call(self._proxy.cut)

    def restore(self) -> None:
        self._call(self._proxy.restore)

    def _call(self, fn: Callable[[], None]) -> None:
        async def run() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)
