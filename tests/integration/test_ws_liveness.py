"""Keepalive over real sockets: a peer that stops answering pings is dropped and its slot freed.

The server runs with short uvicorn keepalive settings (ws_ping_interval, ws_ping_timeout), so a silent peer
should be gone well within 3 s, while a normal `websockets` client (which answers pings by itself) stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import orjson
import pytest

from tests.support import (
    KEY_A,
    connections,
    eventually,
    live_server,
    make_settings,
    parse_ws_frame,
    raw_ws_handshake,
    send_masked_text,
    wait_for_connections,
    ws_connect,
)

pytestmark = pytest.mark.integration

PINGS = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.2}
DROP_WITHIN_S = 3.0
OP_TEXT, OP_CLOSE, OP_PING = 0x1, 0x8, 0x9


def read_frames_until(sock: socket.socket, buffer: bytes, opcode: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """Read frames (blocking) until one with `opcode`; return the frames read and the bytes left over."""
    frames: list[tuple[int, bytes]] = []
    while True:
        parsed = parse_ws_frame(buffer)
        if parsed is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"EOF before a frame with opcode {opcode}; frames: {frames}")
            buffer += chunk
            continue
        op, payload, buffer = parsed
        frames.append((op, payload))
        if op == opcode:
            return frames, buffer


def drain_to_eof(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read everything the server still sends; (whether the stream ended, the bytes read)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True, data
            data += chunk
    except ConnectionResetError:
        return True, data
    except TimeoutError:
        return False, data


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    while (parsed := parse_ws_frame(data)) is not None:
        op, payload, data = parsed
        frames.append((op, payload))
    return frames


async def test_a_peer_that_never_answers_pings_is_dropped_and_a_normal_client_stays() -> None:
    async with live_server(make_settings(), **PINGS) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        async with ws_connect(srv, "normal") as normal:
            assert (await normal.recv())["event_type"] == "connected"
            sock, rest = await asyncio.to_thread(
                raw_ws_handshake, "127.0.0.1", port, f"/ws/chat/silent?api_key={KEY_A}"
            )
            with contextlib.closing(sock):
                frames, _ = await asyncio.to_thread(read_frames_until, sock, rest, OP_TEXT)
                connected = orjson.loads(frames[-1][1])
                assert connected["event_type"] == "connected" and connected["data"]["session_id"] == "silent"
                assert await connections(srv) == 2
                started = time.monotonic()
                # from now on the raw socket is silent: it reads nothing and answers no ping
                assert await wait_for_connections(srv, 1, DROP_WITHIN_S) == 1, "the silent peer was not dropped"
                ended, data = await asyncio.to_thread(drain_to_eof, sock, 2.0)
                assert ended, "the raw socket did not see EOF"
                ops = [op for op, _ in frames_of(data)]
                assert OP_PING in ops  # it was pinged, did not answer
                if OP_CLOSE in ops:  # uvicorn says why before it closes (an abort would be fine too)
                    close_payload = dict(frames_of(data))[OP_CLOSE]
                    assert int.from_bytes(close_payload[:2], "big") == 1011  # keepalive ping timeout
            # the normal client stayed connected for as long (and longer)
            await asyncio.sleep(max(0.0, DROP_WITHIN_S - (time.monotonic() - started)))  # kept: staying is the fact
            assert await connections(srv) == 1
            await normal.send("ping")
            assert (await normal.recv())["event_type"] == "pong"
            await normal.send("chat", message="still here?")
            frames = await normal.until("done")
            assert frames[-1]["data"]["status"] == "completed"
        assert await connections(srv) == 0


async def test_a_normal_client_idle_for_3_seconds_stays_connected() -> None:
    async with live_server(make_settings(), **PINGS) as srv, ws_connect(srv, "idle") as ws:
        assert (await ws.recv())["event_type"] == "connected"
        await asyncio.sleep(DROP_WITHIN_S)  # kept: the scenario is a client idle this long
        assert await connections(srv) == 1
        await ws.send("ping")
        assert (await ws.recv())["event_type"] == "pong"


async def test_a_peer_that_stops_reading_during_a_long_answer_is_dropped_and_frees_its_slot() -> None:
    # The send buffer holds the whole answer, so the socket is never cut off as a slow consumer. uvicorn's
    # keepalive alone cannot free it (its close waits to flush a buffer the peer never drains): the server's
    # send timeout does, once one send has been blocked for DATAAGENT_WS_SEND_TIMEOUT (1.5 s here).
    settings = make_settings(demo_chunks=30000, demo_chunk_delay_ms=0, ws_send_buffer=100_000, ws_send_timeout=1.5)
    async with live_server(settings, ws_ping_interval=1.0, ws_ping_timeout=0.5) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1])
        sock, _ = await asyncio.to_thread(
            raw_ws_handshake, "127.0.0.1", port, f"/ws/chat/stalled?api_key={KEY_A}", 4096
        )
        with contextlib.closing(sock):
            send_masked_text(sock, '{"type": "chat", "payload": {"message": "a long answer"}}')
            # from now on the raw socket reads nothing and answers no ping
            started = time.monotonic()
            async with srv.client() as c:  # the answer ends: its assistant message is persisted

                async def answer_stored() -> bool:
                    return (await c.get("/api/v1/sessions/stalled")).json().get("message_count", 0) >= 2

                await eventually(answer_stored, timeout=5, interval=0.05, what="the answer's end")
            assert await connections(srv) == 1  # the answer ended, the stalled socket still holds its slot
            remaining = max(0.0, DROP_WITHIN_S - (time.monotonic() - started))
            assert await wait_for_connections(srv, 0, timeout=remaining) == 0, "the stalled peer holds its slot"
