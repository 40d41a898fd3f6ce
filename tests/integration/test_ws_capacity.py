"""DATAAGENT_MAX_CONNECTIONS over real sockets: 1013 over capacity, 503 for REST, refusal order, no leaked slots."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from tests.support import (
    KEY_A,
    KEY_B,
    LiveServer,
    WsClient,
    connections,
    eventually,
    live_server,
    make_settings,
    refusal,
    wait_for_connections,
    ws_connect,
)

pytestmark = pytest.mark.integration

CLOSE_TRY_AGAIN = 1013


async def open_admitted(stack: contextlib.AsyncExitStack, srv: LiveServer, session_id: str) -> WsClient:
    """A socket that the server admitted: its first frame is `connected`."""
    ws = await stack.enter_async_context(ws_connect(srv, session_id))
    assert (await ws.recv())["event_type"] == "connected"
    return ws


async def test_a_third_socket_over_max_connections_2_is_accepted_then_closed_with_1013() -> None:
    async with live_server(make_settings(max_connections=2)) as srv, contextlib.AsyncExitStack() as stack:
        await open_admitted(stack, srv, "cap-1")
        await open_admitted(stack, srv, "cap-2")
        code, frames = await refusal(srv, "cap-3")
        assert code == CLOSE_TRY_AGAIN
        assert frames == []  # no `connected` frame: the socket was never admitted
        assert await connections(srv) == 2


async def test_a_slot_freed_by_a_closing_socket_admits_a_new_socket() -> None:
    async with live_server(make_settings(max_connections=2)) as srv, contextlib.AsyncExitStack() as stack:
        await open_admitted(stack, srv, "keep")
        async with ws_connect(srv, "leaving") as leaving:
            assert (await leaving.recv())["event_type"] == "connected"
            assert (await refusal(srv, "newcomer"))[0] == CLOSE_TRY_AGAIN
        # the server releases the slot when it sees the close: poll briefly

        async def admitted() -> list[dict[str, Any]] | None:
            code, frames = await refusal(srv, "newcomer")
            assert code in (None, CLOSE_TRY_AGAIN)
            return frames if code is None else None

        frames = await eventually(admitted, timeout=3, interval=0.05, what="a socket admitted in the freed slot")
        assert frames[-1]["event_type"] == "connected"
        assert frames[-1]["data"]["session_id"] == "newcomer"


async def test_rest_chat_while_two_sockets_hold_both_slots_is_503_capacity_exceeded_with_retry_after() -> None:
    async with live_server(make_settings(max_connections=2)) as srv, contextlib.AsyncExitStack() as stack:
        await open_admitted(stack, srv, "rest-1")
        await open_admitted(stack, srv, "rest-2")
        async with srv.client() as c:
            r = await c.post("/api/v1/chat", json={"message": "anyone there?"})
            assert r.status_code == 503
            assert r.json()["error_code"] == "capacity_exceeded"
            assert r.json()["request_id"] == r.headers["x-request-id"]
            assert int(r.headers["retry-after"]) >= 1
            # the refused chat created nothing
            assert (await c.get("/api/v1/sessions")).json()["total"] == 0
        await stack.aclose()
        assert await wait_for_connections(srv, 0) == 0
        async with srv.client() as c:
            r = await c.post("/api/v1/chat", json={"message": "anyone there now?"})
            assert r.status_code == 200 and r.json()["status"] == "completed"


async def test_refused_sockets_never_hold_a_slot() -> None:
    async with live_server(make_settings(max_connections=2)) as srv, contextlib.AsyncExitStack() as stack:
        async with srv.client(key=KEY_B) as bob:
            r = await bob.post("/api/v1/chat", json={"message": "bob's", "session_id": "bobs-session"})
            assert r.status_code == 200
        await open_admitted(stack, srv, "open-1")
        # below capacity: sockets refused for auth, id or ownership
        for i in range(10):
            assert (await refusal(srv, f"no-key-{i}", key=None))[0] == 4401
            assert (await refusal(srv, f"bad%20id-{i}"))[0] == 4400
            assert (await refusal(srv, "bobs-session"))[0] == 4404
        assert await wait_for_connections(srv, 1) == 1
        await open_admitted(stack, srv, "open-2")
        # at capacity: sockets refused with 1013
        for i in range(20):
            assert (await refusal(srv, f"over-{i}"))[0] == CLOSE_TRY_AGAIN
        assert await connections(srv) == 2
        await stack.aclose()
        assert await wait_for_connections(srv, 0) == 0
        # both slots are really free: two new sockets are admitted
        await open_admitted(stack, srv, "again-1")
        await open_admitted(stack, srv, "again-2")
        assert await connections(srv) == 2


async def test_a_socket_without_a_valid_key_gets_4401_even_at_capacity() -> None:
    async with live_server(make_settings(max_connections=1)) as srv, contextlib.AsyncExitStack() as stack:
        await open_admitted(stack, srv, "full")
        assert (await refusal(srv, "x", key=None))[0] == 4401
        assert (await refusal(srv, "x", key="not-a-key"))[0] == 4401
        # even with a bad session id too: auth is checked first
        assert (await refusal(srv, "bad%20id", key=None))[0] == 4401
        assert await connections(srv) == 1


@pytest.mark.parametrize("session_id", ["bad%20id", "x" * 65, "semi;colon", "dot.ted"])
async def test_a_bad_session_id_gets_4400_even_at_capacity(session_id: str) -> None:
    async with live_server(make_settings(max_connections=1)) as srv, contextlib.AsyncExitStack() as stack:
        await open_admitted(stack, srv, "full")
        assert (await refusal(srv, session_id))[0] == 4400
        assert await connections(srv) == 1


async def test_a_64_character_session_id_is_admitted() -> None:
    async with live_server(make_settings(max_connections=1)) as srv:
        code, frames = await refusal(srv, "y" * 64)
        assert code is None and frames[0]["data"]["session_id"] == "y" * 64


async def test_a_session_id_ending_in_a_newline_gets_4400() -> None:
    async with live_server(make_settings(max_connections=1)) as srv:
        assert (await refusal(srv, "abc%0A"))[0] == 4400


async def test_capacity_1013_comes_before_4404_for_another_principals_session() -> None:
    async with live_server(make_settings(max_connections=1)) as srv:
        async with srv.client(key=KEY_B) as bob:
            r = await bob.post("/api/v1/chat", json={"message": "mine", "session_id": "bobs"})
            assert r.status_code == 200
        # below capacity, alice sees bob's session as not found
        code, frames = await refusal(srv, "bobs", key=KEY_A)
        assert code == 4404
        assert [f["data"]["error_code"] for f in frames] == ["session_not_found"]
        async with ws_connect(srv, "alices", key=KEY_A) as full:
            assert (await full.recv())["event_type"] == "connected"
            # at capacity: 1013 first, and nothing about the session leaks
            code, frames = await refusal(srv, "bobs", key=KEY_A)
            assert code == CLOSE_TRY_AGAIN and frames == []
            # and bob's own socket is also just told to try again
            assert (await refusal(srv, "bobs", key=KEY_B))[0] == CLOSE_TRY_AGAIN
