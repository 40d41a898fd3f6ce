"""Which verified queries a run gets as examples: across workers on one MariaDB, under a data policy, and with
the demo engine (which runs the most similar one's SQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.mysqldb import database_url, fresh_database
from tests.support import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration

TOP_CITIES = "SELECT city, COUNT(*) AS n FROM customers GROUP BY city ORDER BY n DESC, city LIMIT 3"
QUESTION = "Which cities have the most customers?"
ROUTES = "/api/v1/verified-queries"
POLICY = """
policies:
  alice:
    tables:
      orders: {}
      products: {}
"""


def llm(fake: FakeOpenAI, **overrides: Any) -> Any:
    return make_settings(**{
        "agent": "llm", "llm_base_url": fake.base_url, "llm_api_key": "sk-test", "llm_model": "fake-model",
        "llm_timeout": 10, "key_scopes": ["alice:admin", "bob:admin"], "hitl_policy": "never", **overrides,
    })


async def examples_of(client: httpx.AsyncClient, question: str, session_id: str) -> list[str] | None:
    r = await client.post("/api/v1/chat", json={"message": question, "session_id": session_id})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    [started] = [e["data"] for e in r.json()["events"] if e["event_type"] == "run_started"]
    return started.get("verified_queries")


@pytest.mark.mysql
async def test_a_change_through_one_worker_is_used_by_the_next_question_on_another(fake_openai: FakeOpenAI) -> None:
    async with fresh_database("dataagent_verified") as db:
        settings = llm(fake_openai, session_store="mysql", mysql_url=database_url(db))
        async with live_server(settings) as one, live_server(settings) as two, one.client() as on_one, \
                two.client() as on_two:
            for _ in range(4):
                fake_openai.add_text("ok")
            assert await examples_of(on_two, "which city has most customers", "w1") is None  # indexed: none
            made = (await on_one.post(ROUTES, json={"question": QUESTION, "sql": TOP_CITIES})).json()
            assert await examples_of(on_two, "which city has most customers", "w2") == [made["query_id"]]
            r = await on_one.patch(f"{ROUTES}/{made['query_id']}", json={"question": "Revenue per product category"})
            assert r.status_code == 200
            assert await examples_of(on_two, "which city has most customers", "w3") is None
            assert await examples_of(on_two, "revenue of each category", "w4") == [made["query_id"]]
            await on_one.delete(f"{ROUTES}/{made['query_id']}")
            fake_openai.add_text("ok")
            assert await examples_of(on_two, "revenue of each category", "w5") is None


async def test_a_principal_is_not_shown_a_verified_query_its_data_policy_refuses(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    async with live_server(llm(fake_openai, data_policy=str(policy))) as srv, srv.client() as alice, \
            srv.client(KEY_B) as bob:
        made = (await bob.post(ROUTES, json={"question": QUESTION, "sql": TOP_CITIES})).json()
        fake_openai.add_text("ok").add_text("ok")
        assert await examples_of(alice, "which city has most customers", "p1") is None  # customers: not hers
        assert TOP_CITIES not in fake_openai.requests[-1].messages[0]["content"]
        assert await examples_of(bob, "which city has most customers", "p2") == [made["query_id"]]  # no entry: all


async def test_the_demo_engine_runs_the_most_similar_verified_query() -> None:
    settings = make_settings(key_scopes=["alice:admin"], hitl_policy="never")
    async with live_server(settings) as srv, srv.client() as alice:
        made = (await alice.post(ROUTES, json={"question": QUESTION, "sql": TOP_CITIES})).json()
        r = await alice.post("/api/v1/chat", json={"message": "which city has the most customers", "session_id": "d1"})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        events = r.json()["events"]
        [started] = [e["data"] for e in events if e["event_type"] == "run_started"]
        [call] = [e["data"] for e in events if e["event_type"] == "tool_call"]
        [result] = [e["data"] for e in events if e["event_type"] == "tool_result"]
        assert started["verified_queries"] == [made["query_id"]] and call["tool_args"]["sql"] == TOP_CITIES
        assert result["status"] == "success" and result["data"]["table"]["columns"] == ["city", "n"]
        assert QUESTION in r.json()["content"]
        r = await alice.post("/api/v1/chat", json={"message": "hello there", "session_id": "d1"})
        assert not [e for e in r.json()["events"] if e["event_type"] == "tool_call"]
