"""End users under one API key (issue 14): two end users of one key and a second key, over every REST route,
SSE and the WebSocket, on the memory store and on MariaDB; the refused header, the id's validation, auth off."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from tests.fakes.openai_server import FakeOpenAI
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.support import KEY_A, KEY_B, LiveServer, live_server, make_settings, refusal, ws_connect

pytestmark = pytest.mark.integration

SCOPED = {"key_scopes": ["alice:end_users"]}  # alice's key may name end users, bob's may not
STORES = ["memory", pytest.param("mysql", marks=pytest.mark.mysql)]
ROUTES_ON_A_SESSION = ("get", "messages", "chat", "cancel", "hitl", "delete", "stream", "chat_stream")


@contextlib.asynccontextmanager
async def server(store: str, **overrides: Any) -> AsyncIterator[LiveServer]:
    values = SCOPED | overrides
    if store == "memory":
        async with live_server(make_settings(**values)) as srv:
            yield srv
        return
    async with fresh_database("dataagent_endusers") as database:
        values |= {"session_store": "mysql", "mysql_host": MYSQL_HOST, "mysql_port": MYSQL_PORT,
                   "mysql_database": database}
        async with live_server(make_settings(**values)) as srv:
            yield srv


def client(srv: LiveServer, key: str | None, user: str | None = None) -> httpx.AsyncClient:
    headers = {"X-API-Key": key} if key else {}
    if user is not None:
        headers["X-User-ID"] = user
    return httpx.AsyncClient(base_url=srv.base_url, headers=headers, timeout=30)


async def call(c: httpx.AsyncClient, route: str, sid: str) -> httpx.Response:
    """One route on the session `sid`, as the client `c` (a stream is read up to its first event)."""
    if route == "get":
        return await c.get(f"/api/v1/sessions/{sid}")
    if route == "messages":
        return await c.get(f"/api/v1/sessions/{sid}/messages")
    if route == "chat":
        return await c.post("/api/v1/chat", json={"message": "mine now?", "session_id": sid})
    if route == "cancel":
        return await c.post(f"/api/v1/chat/{sid}/cancel")
    if route == "hitl":
        return await c.post(f"/api/v1/chat/{sid}/hitl", json={"interrupt_id": "i", "decisions": [{"type": "approve"}]})
    if route == "delete":
        return await c.delete(f"/api/v1/sessions/{sid}")
    path, body = (f"/api/v1/sessions/{sid}/stream", None) if route == "stream" else (
        "/api/v1/chat/stream", {"message": "mine now?", "session_id": sid})
    async with c.stream("GET" if body is None else "POST", path, json=body) as r:
        if r.status_code == 200:
            async for line in r.aiter_lines():  # the first event is enough: the stream was admitted
                if line.startswith("event:"):
                    break
        else:
            await r.aread()
        return r


async def history(c: httpx.AsyncClient, sid: str) -> list[tuple[str, str]]:
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return [(m["role"], m["content"]) for m in messages]


def error_code(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error_code"]


@pytest.mark.parametrize("store", STORES)
async def test_one_end_user_reaches_none_of_anothers_sessions_nor_does_another_key(store: str) -> None:
    async with server(store) as srv, client(srv, KEY_A, "u1") as u1, client(srv, KEY_A, "u2") as u2, \
            client(srv, KEY_B) as bob:
        assert (await u1.post("/api/v1/chat", json={"message": "u1's secret", "session_id": "s-u1"})).status_code \
            == 200
        before = await history(u1, "s-u1")
        for intruder, who in ((u2, "another end user"), (bob, "another key")):
            for route in ROUTES_ON_A_SESSION:
                assert error_code(await call(intruder, route, "s-u1")) == (404, "session_not_found"), (who, route)
            assert (await intruder.get("/api/v1/sessions")).json()["total"] == 0, who
        assert await history(u1, "s-u1") == before
        assert [s["session_id"] for s in (await u1.get("/api/v1/sessions")).json()["sessions"]] == ["s-u1"]


@pytest.mark.parametrize("store", STORES)
async def test_the_key_itself_reads_its_end_users_sessions_but_acting_needs_the_end_user_named(store: str) -> None:
    async with server(store) as srv, client(srv, KEY_A, "u1") as u1, client(srv, KEY_A) as key:
        await u1.post("/api/v1/chat", json={"message": "u1's question", "session_id": "s-u1"})
        await key.post("/api/v1/chat", json={"message": "the key's own", "session_id": "s-key"})
        before = await history(u1, "s-u1")
        assert (await call(key, "get", "s-u1")).json()["end_user"] == "u1"
        assert (await call(key, "messages", "s-u1")).status_code == 200
        assert (await call(key, "stream", "s-u1")).status_code == 200
        for route in ("chat", "cancel", "hitl", "delete", "chat_stream"):
            assert error_code(await call(key, route, "s-u1")) == (403, "forbidden"), route
        assert await history(u1, "s-u1") == before
        listed = (await key.get("/api/v1/sessions")).json()["sessions"]
        assert {(s["session_id"], s["end_user"]) for s in listed} == {("s-u1", "u1"), ("s-key", None)}
        filtered = (await key.get("/api/v1/sessions", params={"user_id": "u1"})).json()
        assert [s["session_id"] for s in filtered["sessions"]] == ["s-u1"] and filtered["total"] == 1
        for route in ROUTES_ON_A_SESSION:  # and the end user never reaches the key's own session
            assert error_code(await call(u1, route, "s-key")) == (404, "session_not_found"), route
        assert (await call(u1, "delete", "s-u1")).status_code == 204


@pytest.mark.parametrize("store", STORES)
async def test_over_the_websocket_an_end_user_is_refused_anothers_session_and_the_key_may_only_watch(
    store: str,
) -> None:
    async with server(store) as srv, client(srv, KEY_A, "u1") as u1:
        await u1.post("/api/v1/chat", json={"message": "first", "session_id": "s-u1"})
        assert (await refusal(srv, "s-u1", KEY_A, "user_id=u2"))[0] == 4404
        assert (await refusal(srv, "s-u1", KEY_B))[0] == 4404
        async with ws_connect(srv, "s-u1", KEY_A) as watcher, ws_connect(
                srv, "s-u1", None, additional_headers={"X-API-Key": KEY_A, "X-User-ID": "u1"}) as owner:
            assert (await watcher.recv())["event_type"] == (await owner.recv())["event_type"] == "connected"
            await watcher.send("chat", message="the key may not ask here")
            refused = await watcher.recv()
            assert refused["event_type"] == "error" and refused["data"]["error_code"] == "forbidden"
            await watcher.send("cancel")
            assert (await watcher.recv())["data"]["error_code"] == "forbidden"
            await owner.send("chat", message="second", user_id="u2")
            mismatch = await owner.recv()
            assert mismatch["data"]["error_code"] == "validation_error"
            await owner.send("chat", message="second", user_id="u1")
            assert (await owner.until("done"))[-1]["data"]["status"] == "completed"
            assert (await watcher.until("done"))[-1]["data"]["status"] == "completed"  # the key watches it
        contents = [content for _, content in await history(u1, "s-u1")]
        assert len(contents) == 4 and contents[0] == "first" and contents[2] == "second"
        async with ws_connect(srv, "s-u2", KEY_A, "user_id=u2") as u2_socket:
            await u2_socket.recv()
            await u2_socket.send("chat", message="u2's own")
            assert (await u2_socket.until("done"))[-1]["data"]["status"] == "completed"
        assert error_code(await call(u1, "get", "s-u2")) == (404, "session_not_found")


@pytest.mark.parametrize("store", STORES)
async def test_an_idempotency_key_reused_by_another_end_user_runs_anew_for_it(store: str) -> None:
    async with server(store) as srv, client(srv, KEY_A, "u1") as u1, client(srv, KEY_A, "u2") as u2, \
            client(srv, KEY_A) as key:
        body, headers = {"message": "same words"}, {"Idempotency-Key": "k-shared"}
        first = (await u1.post("/api/v1/chat", json=body, headers=headers)).json()
        retry = (await u1.post("/api/v1/chat", json=body, headers=headers)).json()
        other = (await u2.post("/api/v1/chat", json=body, headers=headers)).json()
        bare = (await key.post("/api/v1/chat", json=body, headers=headers)).json()
        assert retry["run_id"] == first["run_id"]
        assert len({first["run_id"], other["run_id"], bare["run_id"]}) == 3
        assert len({first["session_id"], other["session_id"], bare["session_id"]}) == 3
        assert error_code(await call(u2, "get", first["session_id"])) == (404, "session_not_found")


async def test_a_key_without_the_end_users_scope_naming_one_is_refused_everywhere_never_ignored() -> None:
    async with server("memory") as srv, client(srv, KEY_B, "u1") as bob_for_u1, client(srv, KEY_B) as bob:
        for r in (await bob_for_u1.get("/api/v1/sessions"),
                  await bob_for_u1.post("/api/v1/chat", json={"message": "hi", "session_id": "b-1"}),
                  await bob_for_u1.get("/api/v1/schema"),
                  await bob.get("/api/v1/sessions", params={"user_id": "u1"}),
                  await call(bob_for_u1, "chat_stream", "b-2")):
            assert error_code(r) == (403, "forbidden"), r.request.url
        assert (await bob.get("/api/v1/sessions")).json()["total"] == 0  # nothing was created
        assert (await refusal(srv, "b-3", KEY_B, "user_id=u1"))[0] == 4403
        async with ws_connect(srv, "b-4", None, additional_headers={"X-API-Key": KEY_B, "X-User-ID": "u1"}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.parametrize("user_id", ["", "has space", "x" * 129, "é", "semi;colon", "new\nline", "a/b"])
async def test_an_end_user_id_outside_the_charset_or_length_is_a_validation_error(user_id: str) -> None:
    async with server("memory") as srv, client(srv, KEY_A) as key:
        r = await key.get("/api/v1/sessions", params={"user_id": user_id})
        assert error_code(r) == (422, "validation_error")
        if user_id.isascii() and "\n" not in user_id:  # what a header can carry
            r = await key.post("/api/v1/chat", json={"message": "hi"}, headers={"X-User-ID": user_id})
            assert error_code(r) == (422, "validation_error")
        query = str(httpx.QueryParams({"user_id": user_id}))
        assert (await refusal(srv, "v-1", KEY_A, query))[0] == 4400
        assert (await key.get("/api/v1/sessions")).json()["total"] == 0


async def test_a_lone_surrogate_or_two_different_names_for_the_end_user_are_refused() -> None:
    async with server("memory") as srv, client(srv, KEY_A, "u1") as u1:
        assert error_code(await u1.get("/api/v1/sessions?user_id=%ED%A0%80")) == (422, "validation_error")
        assert error_code(await u1.get("/api/v1/sessions", params={"user_id": "u2"})) == (422, "validation_error")
        assert (await u1.get("/api/v1/sessions", params={"user_id": "u1"})).status_code == 200
        assert (await refusal(srv, "v-2", KEY_A, "user_id=%ED%A0%80"))[0] == 4400
        longest = "a.b_c@d:e+f-" + "z" * 116
        r = await u1.post("/api/v1/chat", json={"message": "hi", "session_id": "v-3"}, headers={"X-User-ID": longest})
        assert r.status_code == 200
        assert (await u1.get("/api/v1/sessions/v-3", headers={"X-User-ID": longest})).json()["end_user"] == longest


async def test_with_auth_disabled_anybody_may_name_an_end_user_and_their_sessions_stay_apart() -> None:
    async with server("memory", auth_disabled=True, api_keys=[]) as srv, client(srv, None, "u1") as u1, \
            client(srv, None, "u2") as u2, client(srv, None) as anyone:
        assert (await u1.post("/api/v1/chat", json={"message": "u1's", "session_id": "open-1"})).status_code == 200
        for route in ROUTES_ON_A_SESSION:
            assert error_code(await call(u2, route, "open-1")) == (404, "session_not_found"), route
        assert (await u2.get("/api/v1/sessions")).json()["total"] == 0
        listed = (await anyone.get("/api/v1/sessions")).json()["sessions"]
        assert [(s["session_id"], s["user_id"], s["end_user"]) for s in listed] == [("open-1", "anonymous", "u1")]


async def test_the_model_is_told_the_end_user_or_else_the_principal(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_text("one").add_text("two")
    settings = {"agent": "llm", "llm_base_url": fake_openai.base_url, "llm_api_key": "sk-test",
                "llm_model": "fake-model", "llm_timeout": 10, "llm_retries": 0}
    async with server("memory", **settings) as srv, client(srv, KEY_A, "u1@example.com") as u1, \
            client(srv, KEY_A) as key:
        assert (await u1.post("/api/v1/chat", json={"message": "hi"})).json()["status"] == "completed"
        assert (await key.post("/api/v1/chat", json={"message": "hi"})).json()["status"] == "completed"
    assert [r.get("user") for r in fake_openai.requests] == ["u1@example.com", "alice"]
