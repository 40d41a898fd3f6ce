"""Verified queries over real HTTP: promoted from an answer, managed by admins only, and given to the model (the
fake OpenAI server) as examples for similar questions only; on the memory store and on MariaDB."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.fakes.openai_server import FakeOpenAI
from tests.mysqldb import database_url, fresh_database
from tests.support import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration

TOP_CITIES = "SELECT city, COUNT(*) AS n FROM customers GROUP BY city ORDER BY n DESC, city LIMIT 3"
EDITED = "SELECT city, COUNT(*) AS n FROM customers GROUP BY city ORDER BY n DESC, city LIMIT 5"
ROUTES = "/api/v1/verified-queries"
Settings = Callable[..., Any]


@pytest_asyncio.fixture(params=["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """The settings of the session store under test."""
    if request.param == "memory":
        yield {}
        return
    async with fresh_database("dataagent_verified") as db:
        yield {"session_store": "mysql", "mysql_url": database_url(db)}


def llm(fake: FakeOpenAI, store: dict[str, Any], **overrides: Any) -> Any:
    return make_settings(**{
        "agent": "llm", "llm_base_url": fake.base_url, "llm_api_key": "sk-test", "llm_model": "fake-model",
        "llm_timeout": 10, "key_scopes": ["alice:admin"], "hitl_policy": "never", **store, **overrides,
    })


async def ask(client: httpx.AsyncClient, question: str, session_id: str) -> dict[str, Any]:
    r = await client.post("/api/v1/chat", json={"message": question, "session_id": session_id})
    assert r.status_code == 200 and r.json()["status"] in ("completed", "awaiting_approval"), r.text
    return dict(r.json())


def started(answer: dict[str, Any]) -> dict[str, Any]:
    [data] = [e["data"] for e in answer["events"] if e["event_type"] == "run_started"]
    return dict(data)


async def test_a_promoted_answer_is_an_example_for_a_similar_question_only(
    fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    fake_openai.add_tool_calls([("call_1", "run_sql", {"sql": TOP_CITIES})]).add_text("Shanghai leads.")
    async with live_server(llm(fake_openai, store)) as srv, srv.client() as alice:
        answer = await ask(alice, "Which cities have the most customers?", "vq1")
        assert "verified_queries" not in started(answer)  # there are none yet
        r = await alice.post(ROUTES, json={"session_id": "vq1", "message_id": answer["message_id"]})
        assert r.status_code == 201, r.text
        verified = r.json()
        assert (verified["question"], verified["sql"]) == ("Which cities have the most customers?", TOP_CITIES)
        assert verified["source_message_id"] == answer["message_id"] and verified["created_by"] == "alice"

        fake_openai.add_text("Shanghai again.")
        similar = await ask(alice, "which city has most customers this year", "vq2")
        assert started(similar)["verified_queries"] == [verified["query_id"]]
        system = fake_openai.requests[-1].messages[0]["content"]
        assert "Verified queries" in system and TOP_CITIES in system
        assert "Question: Which cities have the most customers?" in system

        fake_openai.add_text("No idea.")
        other = await ask(alice, "What was the revenue of products in the Sports category?", "vq3")
        assert "verified_queries" not in started(other)
        system = fake_openai.requests[-1].messages[0]["content"]
        assert "Verified queries" not in system and TOP_CITIES not in system


async def test_the_promoted_sql_is_the_one_that_ran_after_an_edit(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_tool_calls([("call_1", "run_sql", {"sql": TOP_CITIES})]).add_text("Five cities.")
    async with live_server(llm(fake_openai, {}, hitl_policy="always")) as srv, srv.client() as alice:
        pending = await ask(alice, "Top cities by customers", "vq-edit")
        [hitl] = [e["data"] for e in pending["events"] if e["event_type"] == "hitl"]
        r = await alice.post("/api/v1/chat/vq-edit/hitl", json={
            "interrupt_id": hitl["interrupt_id"], "decisions": [{"type": "edit", "args": {"sql": EDITED}}]})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        r = await alice.post(ROUTES, json={"session_id": "vq-edit", "message_id": r.json()["message_id"]})
        assert r.status_code == 201 and r.json()["sql"] == EDITED, r.text


async def test_only_an_answer_that_ran_sql_is_promoted(fake_openai: FakeOpenAI, store: dict[str, Any]) -> None:
    fake_openai.add_text("Hello there.")
    fake_openai.add_tool_calls([("call_1", "run_sql", {"sql": "SELECT nope FROM nowhere"})]).add_text("Failed.")
    async with live_server(llm(fake_openai, store)) as srv, srv.client() as alice:
        chatter = await ask(alice, "hi", "vq4")
        failed = await ask(alice, "count the nowhere rows", "vq4")
        for message_id in (chatter["message_id"], failed["message_id"], started(chatter)["message_id"]):
            r = await alice.post(ROUTES, json={"session_id": "vq4", "message_id": message_id})
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
        for body, code in (({"session_id": "vq4", "message_id": "msg_nope"}, "message_not_found"),
                           ({"session_id": "nope", "message_id": chatter["message_id"]}, "session_not_found")):
            r = await alice.post(ROUTES, json=body)
            assert r.status_code == 404 and r.json()["error_code"] == code, r.text
        assert (await alice.get(ROUTES)).json()["total"] == 0


async def test_admins_create_list_edit_and_delete_verified_queries(store: dict[str, Any]) -> None:
    async with live_server(make_settings(key_scopes=["alice:admin"], **store)) as srv, srv.client() as alice:
        made = []
        for n in range(3):
            r = await alice.post(ROUTES, json={"question": f"question {n} 北京", "sql": f"SELECT {n}"})
            assert r.status_code == 201, r.text
            made.append(r.json())
        page = (await alice.get(ROUTES, params={"limit": 2, "offset": 1})).json()
        assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 1
        assert [q["query_id"] for q in page["verified_queries"]] == [made[1]["query_id"], made[2]["query_id"]]

        one = made[0]["query_id"]
        r = await alice.patch(f"{ROUTES}/{one}", json={"sql": "SELECT 42"})
        assert r.status_code == 200 and (r.json()["question"], r.json()["sql"]) == ("question 0 北京", "SELECT 42")
        assert r.json()["updated_at"] >= made[0]["updated_at"] and r.json()["created_at"] == made[0]["created_at"]
        assert (await alice.get(f"{ROUTES}/{one}")).json() == r.json()
        assert (await alice.delete(f"{ROUTES}/{one}")).status_code == 204
        for r in (await alice.get(f"{ROUTES}/{one}"), await alice.delete(f"{ROUTES}/{one}"),
                  await alice.patch(f"{ROUTES}/{one}", json={"sql": "SELECT 1"})):
            assert r.status_code == 404 and r.json()["error_code"] == "verified_query_not_found"
        assert (await alice.get(ROUTES)).json()["total"] == 2


async def test_hostile_verified_query_bodies_are_refused_or_made_valid() -> None:
    async with live_server(make_settings(key_scopes=["alice:admin"])) as srv, srv.client() as alice:
        for body in ({}, {"question": "q"}, {"sql": "SELECT 1"}, {"message_id": "m"}, {"question": "   ", "sql": "x"},
                     {"question": "q", "sql": "SELECT 1", "session_id": "s", "message_id": "m"},
                     {"question": "q" * 4001, "sql": "SELECT 1"}, {"question": "q", "sql": "x" * 20_001},
                     {"question": ["q"], "sql": "SELECT 1"}):
            r = await alice.post(ROUTES, json=body)
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", body
        made = (await alice.post(ROUTES, json={"question": "q", "sql": "SELECT 1"})).json()
        for patch in ({}, {"sql": ""}, {"question": "q" * 4001}):
            r = await alice.patch(f"{ROUTES}/{made['query_id']}", json=patch)
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", patch
        lone = b'{"question": "revenue \\ud800 by month", "sql": "SELECT \'\\udfff\'"}'
        r = await alice.post(ROUTES, content=lone, headers={"content-type": "application/json"})
        assert r.status_code == 201 and r.json()["question"] == "revenue \ufffd by month", r.text
        assert r.json()["sql"] == "SELECT '\ufffd'"


async def test_keys_without_the_admin_scope_get_403_on_every_verified_query_route() -> None:
    async with live_server(make_settings(key_scopes=["alice:admin"])) as srv, srv.client() as alice, \
            srv.client(KEY_B) as bob:
        made = (await alice.post(ROUTES, json={"question": "q", "sql": "SELECT 1"})).json()
        one = f"{ROUTES}/{made['query_id']}"
        for r in (await bob.post(ROUTES, json={"question": "q", "sql": "SELECT 1"}), await bob.post(ROUTES, json={}),
                  await bob.get(ROUTES), await bob.get(one), await bob.patch(one, json={"sql": "SELECT 2"}),
                  await bob.delete(one), await bob.delete(f"{ROUTES}/unknown")):
            assert r.status_code == 403 and r.json()["error_code"] == "forbidden", r.text
        async with srv.client(None) as nobody:
            assert (await nobody.get(ROUTES)).status_code == 401
        assert (await alice.get(one)).json() == made  # nothing changed


async def test_an_admin_lists_every_principals_feedback_and_promotes_from_it(
    fake_openai: FakeOpenAI, store: dict[str, Any]
) -> None:
    fake_openai.add_tool_calls([("call_1", "run_sql", {"sql": TOP_CITIES})]).add_text("Shanghai leads.")
    fake_openai.add_text("Hello.")
    async with live_server(llm(fake_openai, store)) as srv, srv.client() as alice, srv.client(KEY_B) as bob:
        good = await ask(bob, "Which cities have the most customers?", "fb-bob")
        chatter = await ask(bob, "hi", "fb-bob")
        for answer, rating in ((good, "up"), (chatter, "down")):
            r = await bob.post(f"/api/v1/sessions/fb-bob/messages/{answer['message_id']}/feedback",
                               json={"rating": rating, "comment": f"{rating}!"})
            assert r.status_code == 200, r.text
        assert (await bob.get("/api/v1/feedback")).status_code == 403  # bob is no admin
        listed = (await alice.get("/api/v1/feedback", params={"rating": "up"})).json()
        assert listed["total"] == 1
        [entry] = listed["feedback"]
        assert (entry["principal"], entry["message_id"], entry["comment"]) == ("bob", good["message_id"], "up!")
        assert (await alice.get("/api/v1/feedback")).json()["total"] == 2
        r = await alice.post(ROUTES, json={"session_id": entry["session_id"], "message_id": entry["message_id"]})
        assert r.status_code == 201 and r.json()["sql"] == TOP_CITIES, r.text
