"""Bad text, deep nesting and non-finite numbers on the MySQL store (real MariaDB; issue 17, items 6, 7, 10)."""

from __future__ import annotations

from typing import Any

import pytest

from dataagent.entrypoints.settings import Settings
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.support import live_server, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

JSON = {"Content-Type": "application/json"}


def mysql_settings(database: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "session_store": "mysql", "mysql_host": MYSQL_HOST, "mysql_port": MYSQL_PORT, "mysql_database": database,
    }
    return make_settings(**(values | overrides))


def nested(depth: int, leaf: str = "{}") -> str:
    return '{"a":' * (depth - 1) + leaf + "}" * (depth - 1)


async def test_bad_input_on_mysql_is_a_422_or_stored_clean_never_a_5xx_or_an_empty_session() -> None:
    async with fresh_database() as db, live_server(mysql_settings(db)) as srv, srv.client() as c:
        # a lone surrogate in a metadata key and in the question: stored with U+FFFD
        body = b'{"message":"hi \\ud800","session_id":"m1","metadata":{"k\\ud800":1}}'
        r = await c.post("/api/v1/chat", content=body, headers=JSON)
        assert r.status_code == 200, r.text
        history = (await c.get("/api/v1/sessions/m1/messages")).json()["messages"]
        assert history[0]["content"] == "hi \ufffd" and history[0]["metadata"] == {"k\ufffd": 1}
        # deep or non-finite metadata: 422 before anything is stored
        for sid, metadata in (("m2", nested(32)), ("m3", nested(40)), ("m4", '{"x":NaN}'), ("m5", '{"x":Infinity}')):
            body = f'{{"message":"hi","session_id":"{sid}","metadata":{metadata}}}'
            r = await c.post("/api/v1/chat", content=body.encode(), headers=JSON)
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
            assert (await c.get(f"/api/v1/sessions/{sid}")).status_code == 404
        # the deepest metadata accepted is stored by MariaDB and read back
        r = await c.post("/api/v1/chat", content=f'{{"message":"hi","session_id":"m6","metadata":{nested(16)}}}'
                         .encode(), headers=JSON)
        assert r.status_code == 200, r.text
        assert (await c.get("/api/v1/sessions/m6/messages")).status_code == 200
        # offsets MySQL cannot take are refused by the schema
        for path in ("/api/v1/sessions", "/api/v1/sessions/m1/messages"):
            r = await c.get(path, params={"offset": "18446744073709551616"})
            assert r.status_code == 422, r.text


async def test_the_deepest_decision_accepted_is_stored_in_the_interrupts_table() -> None:
    async with fresh_database() as db, live_server(mysql_settings(db)) as srv, srv.client() as c:
        r = await c.post("/api/v1/chat", json={"message": "SELECT name FROM products LIMIT 1", "session_id": "d1"})
        interrupt_id = r.json()["events"][-1]["data"]["interrupt_id"]
        args = '{"sql":"SELECT 1 AS n","note":' + nested(14, '"\\ud800"') + "}"  # the decision is 16 deep
        body = f'{{"interrupt_id":"{interrupt_id}","decisions":[{{"type":"edit","args":{args}}}]}}'
        r = await c.post("/api/v1/chat/d1/hitl", content=body.encode(), headers=JSON)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        r = await c.post("/api/v1/chat", json={"message": "SELECT name FROM products LIMIT 1", "session_id": "d1"})
        interrupt_id = r.json()["events"][-1]["data"]["interrupt_id"]
        args = '{"sql":"SELECT 1 AS n","note":' + nested(15) + "}"
        body = f'{{"interrupt_id":"{interrupt_id}","decisions":[{{"type":"edit","args":{args}}}]}}'
        r = await c.post("/api/v1/chat/d1/hitl", content=body.encode(), headers=JSON)
        assert r.status_code == 422 and r.json()["error_code"] == "validation_error", r.text
