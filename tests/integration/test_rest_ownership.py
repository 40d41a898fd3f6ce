"""Sessions belong to the principal that created them: another key sees them as 404, never 403."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from tests.support import KEY_A, KEY_B, live_server, make_settings, wait_for_active_run

pytestmark = pytest.mark.integration


def assert_not_found(r: httpx.Response, what: str) -> None:
    assert r.status_code == 404, (what, r.status_code, r.text)
    assert r.json()["error_code"] == "session_not_found", what


async def snapshot(client: httpx.AsyncClient, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    info = (await client.get(f"/api/v1/sessions/{session_id}")).json()
    messages = (await client.get(f"/api/v1/sessions/{session_id}/messages")).json()["messages"]
    return info, messages



async def test_another_key_sees_none_of_alices_sessions_and_each_route_answers_404() -> None:
    async with live_server() as srv, srv.client(KEY_A) as alice, srv.client(KEY_B) as bob:
        r = await alice.post("/api/v1/chat", json={"message": "alice's secret question", "session_id": "alice-s"})
        assert r.status_code == 200
        first_message = r.json()["message_id"]
        before = await snapshot(alice, "alice-s")

        listed = (await bob.get("/api/v1/sessions")).json()
        assert listed["sessions"] == [] and listed["total"] == 0

        sid = "alice-s"
        assert_not_found(await bob.get(f"/api/v1/sessions/{sid}"), "get")
        assert_not_found(await bob.get(f"/api/v1/sessions/{sid}/messages"), "messages")
        assert_not_found(await bob.get(f"/api/v1/sessions/{sid}/messages", params={"after": first_message}),
                         "messages after a cursor")
        assert_not_found(await bob.get(f"/api/v1/sessions/{sid}/messages", params={"before": first_message}),
                         "messages before a cursor")
        assert_not_found(await bob.get(f"/api/v1/sessions/{sid}/messages", params={"after": "msg_unknown"}),
                         "messages after an unknown cursor")
        assert_not_found(await bob.post("/api/v1/chat", json={"message": "mine now", "session_id": sid}), "chat")
        assert_not_found(await bob.post(f"/api/v1/chat/{sid}/cancel"), "cancel")
        assert_not_found(await bob.post(f"/api/v1/chat/{sid}/cancel", json={"run_id": r.json()["run_id"]}),
                         "cancel with run_id")
        assert_not_found(await bob.post(f"/api/v1/chat/{sid}/hitl", json={
            "interrupt_id": "int_whatever", "decisions": [{"type": "approve"}],
        }), "hitl")
        assert_not_found(await bob.delete(f"/api/v1/sessions/{sid}"), "delete")

        assert await snapshot(alice, sid) == before
        assert (await bob.get("/api/v1/sessions")).json()["total"] == 0


async def test_a_foreign_session_looks_exactly_like_a_missing_one() -> None:
    async with live_server() as srv, srv.client(KEY_A) as alice, srv.client(KEY_B) as bob:
        await alice.post("/api/v1/chat", json={"message": "hi", "session_id": "exists"})
        for path in ("/api/v1/sessions/{}", "/api/v1/sessions/{}/messages"):
            foreign = await bob.get(path.format("exists"))
            missing = await bob.get(path.format("never-was"))
            assert foreign.status_code == missing.status_code == 404
            assert {k: v for k, v in foreign.json().items() if k != "request_id"} == \
                {k: v for k, v in missing.json().items() if k != "request_id"}


async def test_a_decision_with_any_body_on_a_foreign_session_is_404() -> None:
    async with live_server() as srv, srv.client(KEY_A) as alice, srv.client(KEY_B) as bob:
        await alice.post("/api/v1/chat", json={"message": "hi", "session_id": "alice-h"})
        for body in ({}, {"decisions": []}, {"interrupt_id": "i", "decisions": [{"type": "approve"}] * 2}):
            assert_not_found(await bob.post("/api/v1/chat/alice-h/hitl", json=body), f"hitl {body}")


async def test_bob_cannot_cancel_or_delete_alices_running_answer_which_completes_untouched() -> None:
    settings = make_settings(demo_chunks=60, demo_chunk_delay_ms=10)
    async with live_server(settings) as srv, srv.client(KEY_A) as alice, srv.client(KEY_B) as bob:
        chat = asyncio.create_task(alice.post("/api/v1/chat", json={"message": "long", "session_id": "alice-run"}))
        run_id = await wait_for_active_run(alice, "alice-run")
        assert_not_found(await bob.post("/api/v1/chat/alice-run/cancel"), "cancel")
        assert_not_found(await bob.post("/api/v1/chat/alice-run/cancel", json={"run_id": run_id}), "cancel run")
        assert_not_found(await bob.post("/api/v1/chat", json={"message": "x", "session_id": "alice-run"}), "chat")
        assert_not_found(await bob.delete("/api/v1/sessions/alice-run"), "delete")
        body = (await asyncio.wait_for(chat, 10)).json()
        assert body["status"] == "completed" and body["run_id"] == run_id
        info, messages = await snapshot(alice, "alice-run")
        assert info["message_count"] == 2 and info["user_id"] == "alice"
        assert [(m["role"], m["status"]) for m in messages] == [("user", "completed"), ("assistant", "completed")]
        assert messages[0]["content"] == "long"


async def test_bob_chatting_with_alices_session_id_adds_nothing_to_it_and_creates_nothing_for_him() -> None:
    async with live_server() as srv, srv.client(KEY_A) as alice, srv.client(KEY_B) as bob:
        await alice.post("/api/v1/chat", json={"message": "hello", "session_id": "shared-name"})
        before = await snapshot(alice, "shared-name")
        assert_not_found(await bob.post("/api/v1/chat", json={"message": "hijack", "session_id": "shared-name"}),
                         "chat")
        assert await snapshot(alice, "shared-name") == before
        assert (await bob.get("/api/v1/sessions")).json()["total"] == 0
        # bob's own sessions work as usual next to alice's
        r = await bob.post("/api/v1/chat", json={"message": "bob's", "session_id": "bob-s"})
        assert r.status_code == 200
        assert [s["session_id"] for s in (await bob.get("/api/v1/sessions")).json()["sessions"]] == ["bob-s"]
        assert [s["session_id"] for s in (await alice.get("/api/v1/sessions")).json()["sessions"]] == ["shared-name"]


async def test_a_named_key_gives_its_name_and_an_unnamed_key_a_hash_principal_never_the_key() -> None:
    plain = "plain-key-without-a-name"
    colon = "carol:with:colons:inside"
    expected = "key_" + hashlib.sha256(plain.encode()).hexdigest()[:16]
    async with live_server(make_settings(api_keys=[plain, colon, f"alice:{KEY_A}"])) as srv:
        async with srv.client(plain) as anon, srv.client("with:colons:inside") as carol, srv.client(KEY_A) as alice:
            for client, sid, principal in ((anon, "p-1", expected), (carol, "c-1", "carol"), (alice, "a-1", "alice")):
                r = await client.post("/api/v1/chat", json={"message": "who am I", "session_id": sid})
                assert r.status_code == 200
                info = (await client.get(f"/api/v1/sessions/{sid}")).json()
                assert info["user_id"] == principal
            assert plain not in (await anon.get("/api/v1/sessions")).text
            assert_not_found(await carol.get("/api/v1/sessions/p-1"), "carol reads the unnamed key's session")
        async with srv.client("carol") as wrong:
            assert (await wrong.get("/api/v1/sessions")).status_code == 401
