"""Feedback on answers over real HTTP (uvicorn on 127.0.0.1), on the memory store and on MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.mysqldb import database_url, fresh_database
from tests.support import KEY_B, LiveServer, live_server, make_settings

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(params=["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
async def srv(request: pytest.FixtureRequest) -> AsyncIterator[LiveServer]:
    if request.param == "memory":
        async with live_server(make_settings()) as server:
            yield server
        return
    async with fresh_database("dataagent_feedback") as db:
        async with live_server(make_settings(session_store="mysql", mysql_url=database_url(db))) as server:
            yield server


async def answered(client: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    """A completed answer in the session: {message_id, user_message_id}."""
    r = await client.post("/api/v1/chat", json={"message": "how many orders?", "session_id": session_id})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    [started] = [e["data"] for e in r.json()["events"] if e["event_type"] == "run_started"]
    return {"message_id": r.json()["message_id"], "user_message_id": started["message_id"]}


def path(session_id: str, message_id: str) -> str:
    return f"/api/v1/sessions/{session_id}/messages/{message_id}/feedback"


async def test_feedback_is_stored_read_back_and_changed(srv: LiveServer) -> None:
    async with srv.client() as alice:
        answer = (await answered(alice, "fb1"))["message_id"]
        r = await alice.get(path("fb1", answer))
        assert r.status_code == 404 and r.json()["error_code"] == "feedback_not_found"

        r = await alice.post(path("fb1", answer), json={"rating": "up", "comment": "exactly right"})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first | {"created_at": None, "updated_at": None} == {
            "session_id": "fb1", "message_id": answer, "rating": "up", "comment": "exactly right",
            "created_at": None, "updated_at": None}
        assert (await alice.get(path("fb1", answer))).json() == first

        r = await alice.post(path("fb1", answer), json={"rating": "down"})
        changed = r.json()
        assert r.status_code == 200 and (changed["rating"], changed["comment"]) == ("down", "")
        assert changed["created_at"] == first["created_at"] and changed["updated_at"] >= first["updated_at"]
        assert (await alice.get(path("fb1", answer))).json() == changed


async def test_another_principal_neither_reads_nor_gives_feedback_on_a_session(srv: LiveServer) -> None:
    async with srv.client() as alice, srv.client(KEY_B) as bob:
        answer = (await answered(alice, "fb2"))["message_id"]
        await alice.post(path("fb2", answer), json={"rating": "up", "comment": "alice's"})
        for r in (await bob.get(path("fb2", answer)), await bob.post(path("fb2", answer), json={"rating": "down"})):
            assert r.status_code == 404 and r.json()["error_code"] == "session_not_found", r.text
        # bob's own session, alice's message id: not a message of that session
        await answered(bob, "fb2-bob")
        r = await bob.post(path("fb2-bob", answer), json={"rating": "down"})
        assert r.status_code == 404 and r.json()["error_code"] == "message_not_found"
        assert (await alice.get(path("fb2", answer))).json()["comment"] == "alice's"


async def test_feedback_is_given_on_answers_only_and_goes_with_the_session(srv: LiveServer) -> None:
    async with srv.client() as alice:
        ids = await answered(alice, "fb3")
        r = await alice.post(path("fb3", ids["user_message_id"]), json={"rating": "up"})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        r = await alice.post(path("fb3", "msg_nope"), json={"rating": "up"})
        assert r.status_code == 404 and r.json()["error_code"] == "message_not_found"
        assert (await alice.post(path("fb3", ids["message_id"]), json={"rating": "up"})).status_code == 200
        assert (await alice.delete("/api/v1/sessions/fb3")).status_code == 204
        r = await alice.get(path("fb3", ids["message_id"]))
        assert r.status_code == 404 and r.json()["error_code"] == "session_not_found"


async def test_hostile_feedback_bodies_are_refused_or_made_valid(srv: LiveServer) -> None:
    async with srv.client() as alice:
        answer = (await answered(alice, "fb4"))["message_id"]
        for body in ({"rating": "sideways"}, {}, {"rating": "up", "comment": "x" * 2001}, {"rating": ["up"]},
                     {"rating": "up", "comment": {"nested": 1}}):
            r = await alice.post(path("fb4", answer), json=body)
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", body
        r = await alice.post(path("fb4", answer), content=b'{"rating": "up", "comment": "' + b"y" * 2_000_000 + b'"}',
                             headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error_code"] == "payload_too_large"
        assert (await alice.get(path("fb4", answer))).status_code == 404  # nothing was stored

        lone = b'{"rating": "up", "comment": "half \\ud800 pair \\udfff end"}'
        r = await alice.post(path("fb4", answer), content=lone, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.json()["comment"] == "half \ufffd pair \ufffd end"
        assert (await alice.get(path("fb4", answer))).json()["comment"] == "half \ufffd pair \ufffd end"


async def test_a_foreign_session_is_not_found_before_the_body_is_looked_at(srv: LiveServer) -> None:
    async with srv.client() as alice, srv.client(KEY_B) as bob:
        answer = (await answered(alice, "fb5"))["message_id"]
        for body in ({"rating": "sideways"}, {"rating": "up", "comment": "x" * 5000}):
            r = await bob.post(path("fb5", answer), json=body)
            assert r.status_code == 404 and r.json()["error_code"] == "session_not_found", r.text
