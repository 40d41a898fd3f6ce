"""Bad text, deep nesting and non-finite numbers from clients, over a real server (issue 17, items 6, 7, 10)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from tests.support import KEY_A, LiveServer, live_server, raw_ws_handshake, ws_connect

pytestmark = pytest.mark.integration

LONE = "\\ud800"  # a JSON escape of a lone surrogate, as a client can send it
JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> str:
    """A JSON object `depth` levels deep: {"a":{"a":...{}}}."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


async def post_raw(c: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    return await c.post(path, content=body.encode(), headers=JSON)


async def ask_until_hitl(c: httpx.AsyncClient, sid: str) -> str:
    r = await c.post("/api/v1/chat", json={"message": "SELECT name FROM products LIMIT 1", "session_id": sid})
    assert r.status_code == 200 and r.json()["status"] == "awaiting_approval", r.text
    return str(r.json()["events"][-1]["data"]["interrupt_id"])


async def test_a_rest_decision_with_a_lone_surrogate_is_answered_and_watching_sockets_stay_open() -> None:
    async with live_server() as srv, srv.client() as c, ws_connect(srv, "sur1") as ws:
        await ws.recv()
        interrupt_id = await ask_until_hitl(c, "sur1")
        await ws.until("hitl")
        body = f'{{"interrupt_id":"{interrupt_id}","decisions":[{{"type":"approve","args":{{"note":"{LONE}"}}}}]}}'
        r = await post_raw(c, "/api/v1/chat/sur1/hitl", body)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed"
        frames = await ws.until("done")
        resolved = next(f for f in frames if f["event_type"] == "hitl_resolved")
        assert resolved["data"]["decision"]["args"]["note"] == "\ufffd"
        await ws.send("ping")
        assert (await ws.recv())["event_type"] == "pong"


async def test_a_socket_decision_with_a_lone_surrogate_proceeds_and_the_socket_stays_open() -> None:
    async with live_server() as srv, ws_connect(srv, "sur2") as ws:
        await ws.recv()
        await ws.send("chat", message="SELECT name FROM products LIMIT 1")
        await ws.until("hitl")
        await ws.conn.send(
            f'{{"type":"hitl_decision","payload":{{"decisions":[{{"type":"approve","args":{{"note":"{LONE}"}},'
            f'"message":"ok {LONE}"}}]}}}}'
        )
        frames = await ws.until("done")
        assert frames[-1]["data"]["status"] == "completed"
        decision = next(f for f in frames if f["event_type"] == "hitl_resolved")["data"]["decision"]
        assert decision["args"]["note"] == "\ufffd" and decision["message"] == "ok \ufffd"
        await ws.send("ping")
        assert (await ws.recv())["event_type"] == "pong"


async def test_a_question_with_a_lone_surrogate_is_stored_with_a_replacement_character() -> None:
    async with live_server() as srv, srv.client() as c:
        body = f'{{"message":"hi {LONE}","session_id":"sur3","metadata":{{"k{LONE}":1}}}}'
        r = await post_raw(c, "/api/v1/chat", body)
        assert r.status_code == 200, r.text
        history = (await c.get("/api/v1/sessions/sur3/messages")).json()["messages"]
        assert history[0]["content"] == "hi \ufffd"


@pytest.mark.parametrize("depth", [40, 350, 490, 5000])
async def test_deep_metadata_is_refused_with_422_and_nothing_is_stored(depth: int) -> None:
    async with live_server() as srv, srv.client() as c:
        r = await post_raw(c, "/api/v1/chat", f'{{"message":"hi","session_id":"deep","metadata":{nested(depth)}}}')
        assert r.status_code == 422, r.text
        assert r.json()["error_code"] == "validation_error"
        assert (await c.get("/api/v1/sessions/deep")).status_code == 404


async def test_metadata_at_the_depth_bound_is_accepted_and_its_history_reads_back() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await post_raw(c, "/api/v1/chat", f'{{"message":"hi","session_id":"deep2","metadata":{nested(16)}}}')
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/sessions/deep2/messages")).status_code == 200


async def test_metadata_over_the_size_bound_is_refused_with_422() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "hi", "session_id": "big", "metadata": {"k": "x" * 70_000}})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
        assert (await c.get("/api/v1/sessions/big")).status_code == 404


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
async def test_non_finite_or_unbounded_numbers_in_metadata_or_decision_args_are_refused(number: str) -> None:
    async with live_server() as srv, srv.client() as c:
        r = await post_raw(c, "/api/v1/chat", f'{{"message":"hi","session_id":"nan","metadata":{{"x":[{number}]}}}}')
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
        assert (await c.get("/api/v1/sessions/nan")).status_code == 404
        interrupt_id = await ask_until_hitl(c, "nan2")
        edit = f'{{"type":"edit","args":{{"sql":"SELECT 1","n":{number}}}}}'
        body = f'{{"interrupt_id":"{interrupt_id}","decisions":[{edit}]}}'
        r = await post_raw(c, "/api/v1/chat/nan2/hitl", body)
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
        reject = {"interrupt_id": interrupt_id, "decisions": [{"type": "reject"}]}
        r = await c.post("/api/v1/chat/nan2/hitl", json=reject)
        assert r.status_code == 200, r.text


async def test_socket_frames_with_deep_or_non_finite_metadata_get_a_recoverable_error() -> None:
    async with live_server() as srv, srv.client() as c, ws_connect(srv, "wsdeep") as ws:
        await ws.recv()
        for metadata in (nested(40), nested(600), nested(3000), '{"x":NaN}', '{"x":-Infinity}'):
            await ws.conn.send(f'{{"type":"chat","payload":{{"message":"hi","metadata":{metadata}}}}}')
            frame = await ws.recv()
            assert frame["event_type"] == "error", frame
            assert frame["data"]["error_code"] == "validation_error" and frame["data"]["recoverable"] is True
        assert (await c.get("/api/v1/sessions/wsdeep")).status_code == 404
        await ws.send("chat", message="hi")
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"


# -- item 10: the HTTP edges ---------------------------------------------------------------------------------


async def test_offsets_beyond_the_bound_are_422() -> None:
    async with live_server() as srv, srv.client() as c:
        for path in ("/api/v1/sessions", "/api/v1/sessions/x/messages"):
            r = await c.get(path, params={"offset": "18446744073709551616"})
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe{}", b'{"message": "a"' + b"]" * 3, b"[" * 100_000])
async def test_unparsable_bodies_are_422_validation_error(body: bytes) -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", content=body, headers=JSON)
        assert r.status_code == 422, r.text
        assert r.json()["error_code"] == "validation_error"


async def test_the_schema_says_what_the_server_refuses() -> None:
    async with live_server() as srv, srv.client() as c:
        schema = (await c.get("/openapi.json")).json()
        params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/sessions/{session_id}/messages"]["get"]
                  ["parameters"]}
        assert all(s.get("minLength") == 1 for s in params["after"]["anyOf"] if s.get("type") == "string")
        assert params["offset"]["maximum"] < 2**63
        message = schema["components"]["schemas"]["ChatRequest"]["properties"]["message"]
        assert message.get("pattern") == r"\S"
        r = await c.get("/api/v1/sessions/x/messages", params={"after": ""})
        assert r.status_code == 422
        interrupt_id = await ask_until_hitl(c, "sch")
        for edit in ({"type": "edit"}, {"type": "edit", "args": {}}):
            r = await c.post("/api/v1/chat/sch/hitl", json={"interrupt_id": interrupt_id, "decisions": [edit]})
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        decisions = schema["components"]["schemas"]["HitlRequest"]["properties"]["decisions"]["items"]
        assert "discriminator" in decisions
        r = await c.post("/api/v1/chat", json={"message": " \n\t "})
        assert r.status_code == 422


async def test_405_carries_allow() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.put("/api/v1/chat")
        assert r.status_code == 405 and r.json()["error_code"] == "method_not_allowed"
        assert r.headers["allow"] == "POST"


async def _close_code(srv: LiveServer, path: str) -> int | None:
    async with websockets.connect(f"{srv.ws_url}{path}", open_timeout=10) as conn:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(conn.recv(), 5)
    return closed.value.rcvd.code if closed.value.rcvd else None


@pytest.mark.parametrize("path", ["/ws/chat/a%2Fb", "/ws/chat/a/b", "/ws/chat/" + "x" * 65, "/ws/chat/%C3%A9"])
async def test_socket_paths_that_are_no_session_id_close_with_4400(path: str) -> None:
    async with live_server() as srv:
        assert await _close_code(srv, f"{path}?api_key={KEY_A}") == 4400
        assert await _close_code(srv, path) == 4401


async def test_a_socket_path_with_a_slash_is_accepted_at_the_http_level() -> None:
    async with live_server() as srv:
        host, port = srv.base_url.removeprefix("http://").split(":")
        sock, _ = await asyncio.to_thread(raw_ws_handshake, host, int(port), f"/ws/chat/a%2Fb?api_key={KEY_A}")
        sock.close()

