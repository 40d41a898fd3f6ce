"""The sessions routes (list, get, delete, paged history) over real HTTP against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.polling import wait_for_active_run, wait_for_text
from tests.support.servers import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration

ISO_UTC_MICROS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(\+00:00|Z)$")
SESSION_INFO_FIELDS = {
    "session_id", "user_id", "title", "created_at", "last_active", "message_count", "active_run_id",
    "pending_interrupt", "metadata", "end_user",
}
MESSAGE_FIELDS = {"message_id", "session_id", "role", "content", "created_at", "run_id", "status", "metadata"}


async def ask(client: httpx.AsyncClient, session_id: str, question: str = "how many orders?") -> dict[str, Any]:
    r = await client.post("/api/v1/chat", json={"message": question, "session_id": session_id})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    return r.json()


async def history_of(client: httpx.AsyncClient, session_id: str, questions: int) -> list[dict[str, Any]]:
    """Ask `questions` times in one session and return its whole history (2 messages per question)."""
    for i in range(questions):
        await ask(client, session_id, f"question {i}")
    r = await client.get(f"/api/v1/sessions/{session_id}/messages", params={"limit": 1000})
    messages: list[dict[str, Any]] = r.json()["messages"]
    assert len(messages) == 2 * questions
    return messages


def parse_utc(text: str) -> datetime:
    assert ISO_UTC_MICROS.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return [m["message_id"] for m in messages]



# -- list -----------------------------------------------------------------------------------------


async def test_list_holds_only_the_callers_sessions_most_recently_active_first() -> None:
    async with live_server() as srv, srv.client() as alice, srv.client(KEY_B) as bob:
        for sid in ("a-one", "a-two", "a-three"):
            await ask(alice, sid)
        await ask(bob, "b-one")

        listed = (await alice.get("/api/v1/sessions")).json()
        assert [s["session_id"] for s in listed["sessions"]] == ["a-three", "a-two", "a-one"]
        assert listed["total"] == 3 and listed["limit"] == 20 and listed["offset"] == 0
        assert {s["user_id"] for s in listed["sessions"]} == {"alice"}

        bobs = (await bob.get("/api/v1/sessions")).json()
        assert [s["session_id"] for s in bobs["sessions"]] == ["b-one"] and bobs["total"] == 1


async def test_asking_again_in_an_older_session_moves_it_to_the_front_of_the_list() -> None:
    async with live_server() as srv, srv.client() as c:
        for sid in ("old", "middle", "new"):
            await ask(c, sid)
        await ask(c, "old", "a follow-up question")
        listed = (await c.get("/api/v1/sessions")).json()
        assert [s["session_id"] for s in listed["sessions"]] == ["old", "new", "middle"]


async def test_list_pages_with_limit_and_offset_and_reports_the_whole_total() -> None:
    async with live_server() as srv, srv.client() as c:
        for i in range(5):
            await ask(c, f"s{i}")
        first = (await c.get("/api/v1/sessions", params={"limit": 2})).json()
        second = (await c.get("/api/v1/sessions", params={"limit": 2, "offset": 2})).json()
        last = (await c.get("/api/v1/sessions", params={"limit": 2, "offset": 4})).json()
        beyond = (await c.get("/api/v1/sessions", params={"limit": 2, "offset": 10})).json()
        assert [s["session_id"] for s in first["sessions"]] == ["s4", "s3"]
        assert [s["session_id"] for s in second["sessions"]] == ["s2", "s1"]
        assert [s["session_id"] for s in last["sessions"]] == ["s0"]
        assert beyond["sessions"] == []
        assert {p["total"] for p in (first, second, last, beyond)} == {5}
        assert (second["limit"], second["offset"]) == (2, 2)
        assert (await c.get("/api/v1/sessions", params={"limit": 100})).json()["limit"] == 100


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}])
async def test_list_limit_outside_1_to_100_or_negative_offset_is_a_422_validation_error(
    params: dict[str, Any],
) -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.get("/api/v1/sessions", params=params, headers={"X-Request-ID": "req-422"})
        assert r.status_code == 422
        body = r.json()
        assert body["error_code"] == "validation_error"
        assert body["message"] and body["request_id"] == "req-422"
        assert set(body) <= {"error_code", "message", "request_id", "details"}


# -- get ------------------------------------------------------------------------------------------


async def test_get_returns_every_session_info_field_with_utc_microsecond_timestamps() -> None:
    async with live_server() as srv, srv.client() as c:
        before = datetime.now().astimezone()
        await ask(c, "info-1", "  How many\norders   were shipped in March?  ")
        info = (await c.get("/api/v1/sessions/info-1")).json()
        assert set(info) == SESSION_INFO_FIELDS
        assert info["session_id"] == "info-1"
        assert info["user_id"] == "alice"
        assert info["title"] == "How many orders were shipped in March?"
        assert info["message_count"] == 2
        assert info["active_run_id"] is None and info["pending_interrupt"] is None
        assert info["metadata"] == {} and info["end_user"] is None
        created, last_active = parse_utc(info["created_at"]), parse_utc(info["last_active"])
        assert before <= created <= last_active <= datetime.now().astimezone()


async def test_a_long_first_question_is_cut_to_a_short_title() -> None:
    async with live_server() as srv, srv.client() as c:
        question = "word " * 100
        await ask(c, "long-title", question)
        title = (await c.get("/api/v1/sessions/long-title")).json()["title"]
        assert 0 < len(title) < len(question.strip())
        assert question.startswith(title.rstrip("…"))


async def test_last_active_moves_when_a_message_is_added_but_not_when_the_session_is_read() -> None:
    async with live_server() as srv, srv.client() as c:
        await ask(c, "la")
        first = (await c.get("/api/v1/sessions/la")).json()
        await asyncio.sleep(0.01)  # kept: the clock must move for a touch by a read to show
        await c.get("/api/v1/sessions/la")
        await c.get("/api/v1/sessions/la/messages")
        await c.get("/api/v1/sessions")
        reread = (await c.get("/api/v1/sessions/la")).json()
        assert reread["last_active"] == first["last_active"]

        await ask(c, "la", "another question")
        after_chat = (await c.get("/api/v1/sessions/la")).json()
        assert parse_utc(after_chat["last_active"]) > parse_utc(first["last_active"])
        assert after_chat["created_at"] == first["created_at"]
        assert after_chat["message_count"] == 4
        newest = (await c.get("/api/v1/sessions/la/messages")).json()["messages"][-1]
        assert parse_utc(after_chat["last_active"]) >= parse_utc(newest["created_at"])


async def test_get_of_an_unknown_session_is_404_session_not_found() -> None:
    async with live_server() as srv, srv.client() as c:
        r = await c.get("/api/v1/sessions/nobody-here")
        assert r.status_code == 404 and r.json()["error_code"] == "session_not_found"


# -- delete ---------------------------------------------------------------------------------------


async def test_delete_is_204_and_then_the_session_is_404_on_get_messages_and_delete() -> None:
    async with live_server() as srv, srv.client() as c:
        await ask(c, "doomed")
        await ask(c, "kept")
        r = await c.delete("/api/v1/sessions/doomed")
        assert r.status_code == 204 and r.content == b""
        for method, path in [
            ("GET", "/api/v1/sessions/doomed"), ("GET", "/api/v1/sessions/doomed/messages"),
            ("DELETE", "/api/v1/sessions/doomed"),
        ]:
            r = await c.request(method, path)
            assert r.status_code == 404, (method, path)
            assert r.json()["error_code"] == "session_not_found"
        listed = (await c.get("/api/v1/sessions")).json()
        assert [s["session_id"] for s in listed["sessions"]] == ["kept"] and listed["total"] == 1


async def test_a_deleted_session_id_starts_afresh_with_no_old_messages() -> None:
    async with live_server() as srv, srv.client() as c:
        await history_of(c, "reborn", 3)
        assert (await c.delete("/api/v1/sessions/reborn")).status_code == 204
        await ask(c, "reborn", "a brand new start")
        info = (await c.get("/api/v1/sessions/reborn")).json()
        assert info["message_count"] == 2 and info["title"] == "a brand new start"
        messages = (await c.get("/api/v1/sessions/reborn/messages")).json()["messages"]
        assert [m["content"] for m in messages][0] == "a brand new start" and len(messages) == 2


async def test_deleting_a_session_while_a_long_answer_runs_cancels_it_first() -> None:
    settings = make_settings(demo_chunks=400, demo_chunk_delay_ms=10)
    async with live_server(settings) as srv, srv.client() as asker, srv.client() as deleter:
        chat = asyncio.create_task(asker.post("/api/v1/chat", json={"message": "long one", "session_id": "del-run"}))
        run_id = await wait_for_active_run(deleter, "del-run")
        await wait_for_text(srv, deleter, "del-run")
        started = time.monotonic()
        r = await deleter.delete("/api/v1/sessions/del-run")
        assert r.status_code == 204
        body = (await asyncio.wait_for(chat, 5)).json()
        assert time.monotonic() - started < 2.0
        assert body["status"] == "cancelled" and body["run_id"] == run_id
        done = body["events"][-1]
        assert done["event_type"] == "done" and done["data"]["cancelled"] is True
        assert 0 < len(body["content"]) < len(" ".join(f"tok{i}" for i in range(400)))

        r = await deleter.get("/api/v1/sessions/del-run/messages")
        assert r.status_code == 404 and r.json()["error_code"] == "session_not_found"
        assert (await deleter.get("/api/v1/sessions/del-run")).status_code == 404
        health = (await deleter.get("/api/v1/health")).json()
        assert health["active_runs"] == 0


# -- history: offset paging -----------------------------------------------------------------------


async def test_every_message_has_the_documented_fields_and_history_is_oldest_first() -> None:
    async with live_server() as srv, srv.client() as c:
        history = await history_of(c, "fields", 2)
        assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in history[::2]] == ["question 0", "question 1"]
        for m in history:
            assert set(m) == MESSAGE_FIELDS
            assert m["session_id"] == "fields" and m["status"] == "completed" and m["run_id"]
            parse_utc(m["created_at"])
        times = [parse_utc(m["created_at"]) for m in history]
        assert times == sorted(times)
        assert history[0]["run_id"] == history[1]["run_id"] != history[2]["run_id"]
        assert "tool_calls" in history[1]["metadata"] and "token_usage" in history[1]["metadata"]
        assert len(set(ids(history))) == 4


async def test_offset_paging_walks_the_history_with_has_more_and_total() -> None:
    async with live_server() as srv, srv.client() as c:
        history = await history_of(c, "paged", 4)  # 8 messages
        seen: list[dict[str, Any]] = []
        offset = 0
        pages = []
        while True:
            page = (await c.get("/api/v1/sessions/paged/messages", params={"limit": 3, "offset": offset})).json()
            pages.append(page)
            seen.extend(page["messages"])
            if not page["has_more"]:
                break
            offset += 3
        assert ids(seen) == ids(history)
        assert [len(p["messages"]) for p in pages] == [3, 3, 2]
        assert [p["has_more"] for p in pages] == [True, True, False]
        assert [(p["limit"], p["offset"]) for p in pages] == [(3, 0), (3, 3), (3, 6)]
        assert {p["total"] for p in pages} == {8}

        exact = (await c.get("/api/v1/sessions/paged/messages", params={"limit": 4, "offset": 4})).json()
        assert ids(exact["messages"]) == ids(history[4:]) and exact["has_more"] is False
        beyond = (await c.get("/api/v1/sessions/paged/messages", params={"offset": 50})).json()
        assert beyond["messages"] == [] and beyond["has_more"] is False and beyond["total"] == 8
        default = (await c.get("/api/v1/sessions/paged/messages")).json()
        assert default["limit"] == 100 and default["offset"] == 0 and len(default["messages"]) == 8


# -- history: cursors -----------------------------------------------------------------------------


async def test_after_cursor_returns_the_messages_following_it_and_has_more_looks_forward() -> None:
    async with live_server() as srv, srv.client() as c:
        history = await history_of(c, "after", 4)  # 8 messages
        url = "/api/v1/sessions/after/messages"
        page = (await c.get(url, params={"after": history[1]["message_id"], "limit": 3})).json()
        assert ids(page["messages"]) == ids(history[2:5])
        assert page["has_more"] is True and page["total"] == 8
        page = (await c.get(url, params={"after": history[4]["message_id"], "limit": 3})).json()
        assert ids(page["messages"]) == ids(history[5:8]) and page["has_more"] is False
        page = (await c.get(url, params={"after": history[7]["message_id"]})).json()
        assert page["messages"] == [] and page["has_more"] is False and page["total"] == 8

        walked: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3} | ({"after": cursor} if cursor else {})
            page = (await c.get(url, params=params)).json()
            walked.extend(page["messages"])
            if not page["has_more"]:
                break
            cursor = page["messages"][-1]["message_id"]
        assert ids(walked) == ids(history)


async def test_before_cursor_returns_the_limit_messages_just_before_it_oldest_first() -> None:
    async with live_server() as srv, srv.client() as c:
        history = await history_of(c, "before", 4)  # 8 messages
        url = "/api/v1/sessions/before/messages"
        page = (await c.get(url, params={"before": history[7]["message_id"], "limit": 3})).json()
        assert ids(page["messages"]) == ids(history[4:7])
        assert page["has_more"] is True and page["total"] == 8
        page = (await c.get(url, params={"before": history[3]["message_id"], "limit": 3})).json()
        assert ids(page["messages"]) == ids(history[0:3]) and page["has_more"] is False
        page = (await c.get(url, params={"before": history[2]["message_id"], "limit": 5})).json()
        assert ids(page["messages"]) == ids(history[0:2]) and page["has_more"] is False
        page = (await c.get(url, params={"before": history[0]["message_id"]})).json()
        assert page["messages"] == [] and page["has_more"] is False and page["total"] == 8

        # walking backwards from the newest message reaches the first one, each message exactly once
        walked: list[dict[str, Any]] = [history[-1]]
        cursor = history[-1]["message_id"]
        while True:
            page = (await c.get(url, params={"before": cursor, "limit": 3})).json()
            walked = page["messages"] + walked
            if not page["has_more"]:
                break
            cursor = page["messages"][0]["message_id"]
        assert ids(walked) == ids(history)


@pytest.mark.parametrize("extra", [{"before": "FIRST"}, {"offset": 2}], ids=["after+before", "after+offset"])
async def test_a_cursor_combined_with_the_other_cursor_or_an_offset_is_422(extra: dict[str, Any]) -> None:
    async with live_server() as srv, srv.client() as c:
        history = await history_of(c, "mixed", 2)
        params = {"after": history[1]["message_id"]} | extra
        params = {k: history[0]["message_id"] if v == "FIRST" else v for k, v in params.items()}
        r = await c.get("/api/v1/sessions/mixed/messages", params=params)
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"
        r = await c.get("/api/v1/sessions/mixed/messages", params={"before": history[1]["message_id"], "offset": 1})
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error"


async def test_an_unknown_cursor_is_404_message_not_found_also_when_it_is_another_sessions_message() -> None:
    async with live_server() as srv, srv.client() as c:
        await ask(c, "mine")
        other = await history_of(c, "other", 1)
        for cursor in ("msg_does_not_exist", other[0]["message_id"]):
            for direction in ("after", "before"):
                r = await c.get("/api/v1/sessions/mine/messages", params={direction: cursor})
                assert r.status_code == 404, (direction, cursor)
                assert r.json()["error_code"] == "message_not_found"


async def test_message_page_limit_must_be_within_1_to_1000() -> None:
    async with live_server() as srv, srv.client() as c:
        await ask(c, "bounds")
        url = "/api/v1/sessions/bounds/messages"
        for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
            r = await c.get(url, params=params)
            assert r.status_code == 422, params
            assert r.json()["error_code"] == "validation_error"
        for limit in (1, 1000):
            r = await c.get(url, params={"limit": limit})
            assert r.status_code == 200 and r.json()["limit"] == limit
            assert len(r.json()["messages"]) == min(limit, 2)
            assert r.json()["has_more"] is (limit == 1)
