"""Streaming over HTTP (PROTOCOL.md, Server-sent events): POST /chat/stream, GET /sessions/{id}/stream and
POST /chat with `wait: false`, against a real uvicorn on 127.0.0.1 with `httpx` and `httpx-sse`."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from tests.support import (
    KEY_A,
    KEY_B,
    LiveServer,
    live_server,
    make_settings,
    wait_for_active_run,
    wait_for_connections,
)
from tests.support.frames import assert_contiguous, kinds, stored_answer, text_of

pytestmark = pytest.mark.integration

SQL = "select name, city from customers order by id limit 5"


def frame(event: ServerSentEvent) -> dict[str, Any]:
    """The event's `data`: the WebSocket frame; its `id` and `event` say the same as the frame."""
    data = dict(json.loads(event.data))
    assert event.event == data["event_type"]
    assert event.id == (str(data["seq"]) if "seq" in data else "")
    return data


async def read_until_done(source: Any, stop_after: int | None = None) -> list[dict[str, Any]]:
    """The frames of an event stream up to its end (or up to `stop_after` frames)."""
    frames: list[dict[str, Any]] = []
    async for event in source.aiter_sse():
        frames.append(frame(event))
        if stop_after is not None and len(frames) == stop_after:
            break
    return frames


def slow(**overrides: Any) -> Any:
    return make_settings(demo_chunks=40, demo_chunk_delay_ms=20, **overrides)


async def test_a_streamed_answer_has_contiguous_ids_one_done_and_the_text_that_is_stored() -> None:
    async with live_server() as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hello", "session_id": "s1"}) as es:
            assert es.response.status_code == 200
            assert es.response.headers["content-type"].startswith("text/event-stream")
            assert es.response.headers["x-session-id"] == "s1"
            frames = await read_until_done(es)
        assert kinds(frames)[0] == "run_started" and kinds(frames).count("done") == 1 and kinds(frames)[-1] == "done"
        assert_contiguous(frames)
        assert all(f["session_id"] == "s1" and f["run_id"] == frames[0]["run_id"] for f in frames)
        done = frames[-1]["data"]
        assert done["status"] == "completed"
        stored = await stored_answer(c, "s1")
        assert stored["message_id"] == done["message_id"] and stored["content"] == text_of(frames) != ""


async def test_without_a_session_id_the_stream_names_the_new_session_in_x_session_id() -> None:
    async with live_server() as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hello"}) as es:
            frames = await read_until_done(es)
            sid = es.response.headers["x-session-id"]
        assert frames[0]["session_id"] == sid
        assert (await c.get(f"/api/v1/sessions/{sid}")).status_code == 200


async def test_errors_before_the_run_starts_are_the_json_envelope_with_their_status() -> None:
    async with live_server(slow()) as srv, srv.client() as c, srv.client(KEY_B) as bob, srv.client(None) as nobody:
        for client, body, status, code in ((c, {"message": "   "}, 422, "validation_error"),
                                           (nobody, {"message": "hi"}, 401, "unauthorized")):
            r = await client.post("/api/v1/chat/stream", json=body)
            assert (r.status_code, r.json()["error_code"]) == (status, code)
            assert r.headers["content-type"] == "application/json"
        r = await c.post("/api/v1/chat", json={"message": "long one", "session_id": "busy", "wait": False})
        assert r.status_code == 202
        r = await c.post("/api/v1/chat/stream", json={"message": "again", "session_id": "busy"})
        assert (r.status_code, r.json()["error_code"]) == (409, "run_in_progress")
        r = await bob.post("/api/v1/chat/stream", json={"message": "mine?", "session_id": "busy"})
        assert (r.status_code, r.json()["error_code"]) == (404, "session_not_found")


async def test_cancel_over_rest_mid_stream_ends_it_with_done_cancelled_and_the_partial_kept() -> None:
    async with live_server(slow()) as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "c1"}) as es:
            frames: list[dict[str, Any]] = []
            async for event in es.aiter_sse():
                frames.append(frame(event))
                if frames[-1]["event_type"] == "text" and kinds(frames).count("text") == 3:
                    r = await c.post("/api/v1/chat/c1/cancel")
                    assert r.status_code == 200, r.text
        assert kinds(frames).count("done") == 1 and kinds(frames)[-1] == "done"
        assert frames[-1]["data"]["status"] == "cancelled" and frames[-1]["data"]["cancelled"] is True
        stored = await stored_answer(c, "c1")
        assert stored["status"] == "cancelled" and stored["content"] == text_of(frames) != ""


async def test_an_approval_over_rest_mid_stream_continues_the_same_stream_to_its_done() -> None:
    async with live_server() as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": SQL, "session_id": "h1"}) as es:
            frames: list[dict[str, Any]] = []
            async for event in es.aiter_sse():
                frames.append(frame(event))
                if frames[-1]["event_type"] == "hitl":
                    interrupt_id = frames[-1]["data"]["interrupt_id"]
                    r = await c.post("/api/v1/chat/h1/hitl", json={
                        "interrupt_id": interrupt_id, "decisions": [{"type": "approve"}],
                    })
                    assert r.status_code == 200, r.text
        order = kinds(frames)
        assert order.index("hitl") < order.index("hitl_resolved") < order.index("tool_result") < order.index("done")
        assert order.count("done") == 1 and frames[-1]["data"]["status"] == "completed"
        assert_contiguous(frames)
        assert (await stored_answer(c, "h1"))["content"] == text_of(frames)


async def stream_after(
    srv: LiveServer, sid: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    async with srv.client() as c, aconnect_sse(
        c, "GET", f"/api/v1/sessions/{sid}/stream", headers=headers or {}, params=params or {}
    ) as es:
        assert es.response.status_code == 200, await es.response.aread()
        return await read_until_done(es, stop_after)


async def test_a_dropped_stream_resumed_with_last_event_id_gets_every_later_event_exactly_once() -> None:
    async with live_server(slow()) as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "r1"}) as es:
            first = await read_until_done(es, stop_after=6)
        # the client went away: the run goes on
        assert await wait_for_active_run(c, "r1") == first[0]["run_id"]
        rest = await stream_after(srv, "r1", headers={"Last-Event-ID": str(first[-1]["seq"])})
        connected, events = rest[0], rest[1:]
        assert connected["event_type"] == "connected" and connected["data"]["recovered"] is True
        assert "seq" not in connected
        whole = first + events
        assert_contiguous(whole)
        assert kinds(whole).count("run_started") == 1 and kinds(whole).count("done") == 1
        assert whole[-1]["data"]["status"] == "completed"
        assert (await stored_answer(c, "r1"))["content"] == text_of(whole)


async def test_after_seq_in_the_query_resumes_the_same_way_and_last_event_id_wins_over_it() -> None:
    async with live_server() as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "q1"}) as es:
            frames = await read_until_done(es)
        third = frames[2]["seq"]
        by_query = await stream_after(srv, "q1", params={"after_seq": third})
        assert by_query[0]["data"]["recovered"] is True and by_query[1:] == frames[3:]
        both = await stream_after(srv, "q1", headers={"Last-Event-ID": str(third + 1)}, params={"after_seq": 0})
        assert both[1:] == frames[4:]


async def test_joining_a_running_answer_without_a_resume_point_gets_it_from_its_run_started() -> None:
    async with live_server(slow()) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "hi", "session_id": "j1", "wait": False})
        run_id = r.json()["run_id"]
        frames = await stream_after(srv, "j1")
        assert frames[0]["event_type"] == "connected" and "recovered" not in frames[0]["data"]
        assert frames[0]["data"]["active_run_id"] == run_id
        assert kinds(frames)[1] == "run_started" and kinds(frames)[-1] == "done"
        assert_contiguous(frames[1:])


async def test_an_idle_session_stream_sends_keep_alive_comments_and_follows_the_next_run() -> None:
    async with live_server(make_settings(sse_keepalive=0.05)) as srv, srv.client() as c:
        await c.post("/api/v1/chat", json={"message": "first", "session_id": "k1"})
        async with c.stream("GET", "/api/v1/sessions/k1/stream") as r:
            lines = r.aiter_lines()
            seen: list[str] = []
            while seen.count(": keep-alive") < 2:
                seen.append(await anext(lines))
            ask = await c.post("/api/v1/chat", json={"message": "second", "session_id": "k1", "wait": False})
            rest = [line async for line in lines]
        events = [json.loads(line.removeprefix("data: ")) for line in seen + rest if line.startswith("data: ")]
        assert events[0]["event_type"] == "connected"
        assert events[1]["run_id"] == ask.json()["run_id"] and events[-1]["event_type"] == "done"


async def test_an_evicted_range_says_not_recovered() -> None:
    async with live_server(make_settings(replay_events=10, demo_chunks=30)) as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "e1"}) as es:
            frames = await read_until_done(es)
        evicted = await stream_after(srv, "e1", headers={"Last-Event-ID": str(frames[1]["seq"])}, stop_after=1)
        assert evicted[0]["event_type"] == "connected" and evicted[0]["data"]["recovered"] is False


async def test_another_principals_session_or_an_unused_id_is_404_and_the_key_may_be_a_query_parameter() -> None:
    async with live_server() as srv, srv.client() as c, srv.client(KEY_B) as bob, srv.client(None) as anonymous:
        await c.post("/api/v1/chat", json={"message": "hi", "session_id": "o1"})
        for client, path in ((bob, "/api/v1/sessions/o1/stream"), (c, "/api/v1/sessions/nobody/stream")):
            r = await client.get(path)
            assert (r.status_code, r.json()["error_code"]) == (404, "session_not_found")
        r = await anonymous.get("/api/v1/sessions/o1/stream")
        assert (r.status_code, r.json()["error_code"]) == (401, "unauthorized")
        r = await anonymous.get("/api/v1/sessions/o1/stream", params={"api_key": KEY_B})
        assert r.status_code == 404
        frames = await stream_after(srv, "o1", params={"after_seq": 0, "api_key": KEY_A}, stop_after=1)
        assert frames[0]["event_type"] == "connected"
        for bad in ("x", "-1", str(2**63)):
            r = await c.get("/api/v1/sessions/o1/stream", headers={"Last-Event-ID": bad})
            assert (r.status_code, r.json()["error_code"]) == (422, "validation_error"), bad


async def test_wait_false_answers_202_at_once_and_the_session_shows_the_run_and_its_pending_approval() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": SQL, "session_id": "b1", "wait": False})
        assert r.status_code == 202 and set(r.json()) == {"session_id", "run_id"}
        run_id = r.json()["run_id"]
        assert r.json()["session_id"] == "b1"
        async with aconnect_sse(c, "GET", "/api/v1/sessions/b1/stream") as es:
            frames: list[dict[str, Any]] = []
            async for event in es.aiter_sse():
                frames.append(frame(event))
                if frames[-1]["event_type"] == "hitl":
                    info = (await c.get("/api/v1/sessions/b1")).json()
                    assert info["active_run_id"] == run_id
                    assert info["pending_interrupt"]["interrupt_id"] == frames[-1]["data"]["interrupt_id"]
                    await c.post("/api/v1/chat/b1/hitl", json={
                        "interrupt_id": info["pending_interrupt"]["interrupt_id"], "decisions": [{"type": "reject"}],
                    })
        assert frames[-1]["event_type"] == "done" and frames[-1]["run_id"] == run_id
        info = (await c.get("/api/v1/sessions/b1")).json()
        assert info["active_run_id"] is None and info["pending_interrupt"] is None


async def test_the_platform_example_client_reads_data_lines_of_post_chat_stream() -> None:
    """Called as the DataAgent platform's example Python client does: POST /api/v1/chat/stream with X-API-Key,
    read the body line by line, decode each `data:` line as JSON, print text deltas, stop at `done`."""
    async with live_server() as srv:
        answer, done = "", None
        async with httpx.AsyncClient(timeout=30) as http, http.stream(
            "POST", f"{srv.base_url}/api/v1/chat/stream",
            headers={"X-API-Key": KEY_A, "Content-Type": "application/json", "Accept": "text/event-stream"},
            json={"message": "What can you do?", "session_id": None},
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[len("data:"):].strip())
                if event["event_type"] == "text":
                    answer += event["data"]["content"]
                elif event["event_type"] == "done":
                    done = event["data"]
        assert done is not None and done["status"] == "completed" and answer
        async with srv.client() as c:
            assert (await c.get(f"/api/v1/sessions/{event['session_id']}/messages")).json()["messages"][-1][
                "content"] == answer


async def test_a_stream_holds_a_capacity_slot_until_it_ends() -> None:
    async with live_server(slow(max_connections=1)) as srv, srv.client() as c:
        async with aconnect_sse(c, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": "x1"}) as es:
            events = es.aiter_sse()  # held open: leaving an `async for` would close the response
            assert (await anext(events)).event == "run_started"
            r = await c.post("/api/v1/chat/stream", json={"message": "hi", "session_id": "x2"})
            assert (r.status_code, r.json()["error_code"]) == (503, "capacity_exceeded")
        deadline = asyncio.get_running_loop().time() + 5
        while (await c.get("/api/v1/health")).json()["connections"] != 0:
            assert asyncio.get_running_loop().time() < deadline, "the slot was not given back"
            await asyncio.sleep(0.02)


def read_until(sock: socket.socket, marker: bytes, limit: int = 64 * 1024 * 1024) -> bytes:
    """Bytes from the socket until `marker` has been read (or the peer closes, or `limit` bytes)."""
    tail, total = b"", 0
    while marker not in tail and total < limit:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        tail = (tail + chunk)[-4096:]
    return tail


def stalled_stream(srv: LiveServer, session_id: str) -> socket.socket:
    """POST /chat/stream on a raw socket with a small receive window, which the test then does not read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window the server soon fills
    sock.settimeout(30)
    sock.connect(("127.0.0.1", int(srv.base_url.rsplit(":", 1)[1])))
    body = json.dumps({"message": "hi", "session_id": session_id}).encode()
    sock.sendall(b"POST /api/v1/chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + KEY_A.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return sock


async def test_a_client_that_stops_reading_frees_its_slot_at_once_and_its_stream_ends_with_slow_consumer() -> None:
    settings = make_settings(ws_send_buffer=16, demo_chunks=100_000, demo_chunk_delay_ms=0)
    async with live_server(settings) as srv, srv.client() as c:
        with stalled_stream(srv, "slow") as sock:
            await wait_for_active_run(c, "slow")
            assert await wait_for_connections(srv, 0, timeout=20) == 0  # released while the peer reads nothing
            tail = await asyncio.to_thread(read_until, sock, b"0\r\n\r\n")  # the chunked body's end
        assert b"event: error\ndata: " in tail and b'"error_code":"slow_consumer"' in tail
        assert (await c.post("/api/v1/chat/slow/cancel")).status_code == 200  # the run went on meanwhile


async def test_a_peer_that_reads_nothing_for_the_send_timeout_is_disconnected_and_the_run_goes_on() -> None:
    settings = make_settings(ws_send_buffer=16, ws_send_timeout=1, demo_chunks=30_000, demo_chunk_delay_ms=0)
    async with live_server(settings) as srv, srv.client() as c:
        with stalled_stream(srv, "stalled") as sock:
            await wait_for_active_run(c, "stalled")
            ours = sock.getsockname()
            deadline = asyncio.get_running_loop().time() + 20
            # the watchdog ends the response within send_timeout + 1 s, and the server closes the connection
            # (the kernel still holds what it could not send until the peer reads it)
            while any(p.transport.get_extra_info("peername") == ours and not p.transport.is_closing()
                      for p in srv.server.server_state.connections):
                assert asyncio.get_running_loop().time() < deadline, "the stalled connection was not closed"
                await asyncio.sleep(0.05)
            tail = await asyncio.to_thread(read_until, sock, b"0\r\n\r\n")
        assert not tail.endswith(b"0\r\n\r\n")  # cut off, not ended
        deadline = asyncio.get_running_loop().time() + 30
        while (await c.get("/api/v1/sessions/stalled")).json()["active_run_id"] is not None:
            assert asyncio.get_running_loop().time() < deadline, "the run did not end"
            await asyncio.sleep(0.05)
        assert (await stored_answer(c, "stalled"))["status"] == "completed"  # not cancelled by the drop


async def test_a_session_deleted_while_its_stream_waits_ends_the_stream_with_session_not_found() -> None:
    async with live_server() as srv, srv.client() as c:
        await c.post("/api/v1/chat", json={"message": "first", "session_id": "d1"})
        async with aconnect_sse(c, "GET", "/api/v1/sessions/d1/stream") as es:
            events = es.aiter_sse()
            assert (await anext(events)).event == "connected"  # idle: it waits for the session's next run
            assert (await c.delete("/api/v1/sessions/d1")).status_code == 204
            rest = [frame(event) async for event in events]
        assert kinds(rest) == ["error"] and rest[0]["data"]["error_code"] == "session_not_found"
        assert rest[0]["data"]["recoverable"] is False and rest[0]["session_id"] == "d1"
