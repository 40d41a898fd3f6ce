"""Human-in-the-loop over REST: SQL approval in the demo engine (PROTOCOL.md, POST /chat/{id}/hitl)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.support.polling import eventually
from tests.support.servers import KEY_B, live_server, make_settings

pytestmark = pytest.mark.integration


async def ask(c: httpx.AsyncClient, message: str, session_id: str = "h1") -> dict[str, Any]:
    r = await c.post("/api/v1/chat", json={"message": message, "session_id": session_id})
    assert r.status_code == 200, r.text
    return r.json()


async def decide(
    c: httpx.AsyncClient, interrupt_id: str, decision: dict[str, Any], session_id: str = "h1"
) -> httpx.Response:
    return await c.post(f"/api/v1/chat/{session_id}/hitl", json={"interrupt_id": interrupt_id, "decisions": [decision]})


def hitl_of(body: dict[str, Any]) -> dict[str, Any]:
    assert body["status"] == "awaiting_approval", body
    assert body["message_id"] is None
    last = body["events"][-1]
    assert last["event_type"] == "hitl"
    return last["data"]


def events_of(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in body["events"] if e["event_type"] == kind]


async def test_select_waits_for_approval_with_the_analysed_statement_then_approve_returns_the_table() -> None:
    async with live_server() as srv, srv.client() as c:
        body = await ask(c, "select name, city from customers order by id limit 5")
        hitl = hitl_of(body)
        assert hitl["action"]["name"] == "run_sql"
        args = hitl["action"]["args"]
        assert args["sql"] == "select name, city from customers order by id limit 5"
        assert args["statement_type"] == "SELECT" and args["read_only"] is True and args["tables"] == ["customers"]
        assert set(hitl["allowed_decisions"]) == {"approve", "reject", "edit"}
        assert hitl["expires_at"]
        call = events_of(body, "tool_call")[0]
        assert call["tool_name"] == "run_sql" and call["tool_args"]["sql"] == args["sql"]
        info = (await c.get("/api/v1/sessions/h1")).json()
        assert info["pending_interrupt"]["interrupt_id"] == hitl["interrupt_id"]
        assert info["active_run_id"] == body["run_id"]

        r = await decide(c, hitl["interrupt_id"], {"type": "approve"})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "completed" and done["run_id"] == body["run_id"] and done["message_id"]
        kinds = [e["event_type"] for e in done["events"]]
        assert kinds[0] == "hitl_resolved" and kinds[-1] == "done" and "hitl" not in kinds
        resolved = done["events"][0]["data"]
        assert resolved["interrupt_id"] == hitl["interrupt_id"]
        assert resolved["decision"]["type"] == "approve" and resolved["decision"]["source"] == "client"
        result = events_of(done, "tool_result")[0]
        assert result["status"] == "success"
        table = result["data"]["table"]
        assert table["columns"] == ["name", "city"] and table["row_count"] == 5 and table["truncated"] is False
        assert "5 rows" in done["content"]
        info = (await c.get("/api/v1/sessions/h1")).json()
        assert info["pending_interrupt"] is None and info["active_run_id"] is None
        roles = [(m["role"], m["status"]) for m in (await c.get("/api/v1/sessions/h1/messages")).json()["messages"]]
        assert roles == [("user", "completed"), ("tool", "success"), ("assistant", "completed")]


async def test_edit_runs_the_edited_sql_and_recomputes_the_analysis() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT * FROM products"))
        r = await decide(c, hitl["interrupt_id"], {
            "type": "edit", "args": {"sql": "SELECT category, COUNT(*) AS n FROM products GROUP BY category",
                                     "read_only": "trust me", "tables": ["nothing"]},
        })
        body = r.json()
        assert body["status"] == "completed"
        table = events_of(body, "tool_result")[0]["data"]["table"]
        assert table["columns"] == ["category", "n"]


async def test_edit_to_a_write_is_refused_as_a_tool_error() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT * FROM products"))
        body = (await decide(c, hitl["interrupt_id"], {"type": "edit", "args": {"sql": "DELETE FROM products"}})).json()
        assert body["status"] == "completed"
        assert events_of(body, "tool_result")[0]["status"] == "error"
        count = await ask(c, "sql: SELECT COUNT(*) AS n FROM products", "h2")
        approved = (await decide(c, hitl_of(count)["interrupt_id"], {"type": "approve"}, "h2")).json()
        assert events_of(approved, "tool_result")[0]["data"]["table"]["rows"][0][0] > 0


async def test_reject_tells_the_agent_which_goes_on_and_completes() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT * FROM orders"))
        body = (await decide(c, hitl["interrupt_id"], {"type": "reject", "message": "too broad"})).json()
        assert body["status"] == "completed"
        result = events_of(body, "tool_result")[0]
        assert result["status"] == "error" and "too broad" in result["result"]
        assert "too broad" in body["content"]
        assert events_of(body, "done")[0]["status"] == "completed"


async def test_a_second_decision_is_409_also_after_the_run_ended() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT 1"))
        assert (await decide(c, hitl["interrupt_id"], {"type": "approve"})).status_code == 200
        r = await decide(c, hitl["interrupt_id"], {"type": "reject"})
        assert r.status_code == 409 and r.json()["error_code"] == "decision_conflict"


async def test_two_concurrent_decisions_one_wins_one_conflicts() -> None:
    async with live_server() as srv, srv.client() as c1, srv.client() as c2:
        hitl = hitl_of(await ask(c1, "SELECT 1"))
        r1, r2 = await asyncio.gather(
            decide(c1, hitl["interrupt_id"], {"type": "approve"}),
            decide(c2, hitl["interrupt_id"], {"type": "reject"}),
        )
        assert sorted([r1.status_code, r2.status_code]) == [200, 409]


async def test_unknown_interrupt_is_404_and_a_foreign_key_cannot_decide() -> None:
    async with live_server() as srv, srv.client() as alice, srv.client(KEY_B) as bob:
        hitl = hitl_of(await ask(alice, "SELECT 1"))
        r = await decide(alice, "int_nope", {"type": "approve"})
        assert r.status_code == 404 and r.json()["error_code"] == "interrupt_not_found"
        r = await decide(bob, hitl["interrupt_id"], {"type": "approve"})
        assert r.status_code == 404 and r.json()["error_code"] == "session_not_found"
        assert (await decide(alice, hitl["interrupt_id"], {"type": "approve"})).status_code == 200


async def test_malformed_decisions_are_422() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT 1"))
        for decisions in ([], [{"type": "approve"}, {"type": "approve"}], [{"type": "maybe"}]):
            body = {"interrupt_id": hitl["interrupt_id"], "decisions": decisions}
            r = await c.post("/api/v1/chat/h1/hitl", json=body)
            assert r.status_code == 422 and r.json()["error_code"] == "validation_error", decisions
        r = await decide(c, hitl["interrupt_id"], {"type": "edit"})
        assert r.status_code == 422


async def test_an_undecided_request_times_out_as_reject_and_reads_as_a_timeout() -> None:
    async with live_server(make_settings(hitl_timeout=0.3)) as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT 1"))

        async def answered() -> list[dict[str, Any]] | None:
            messages = (await c.get("/api/v1/sessions/h1/messages")).json()["messages"]
            return list(messages) if messages[-1]["role"] == "assistant" else None

        messages = await eventually(answered, timeout=5, what="the answer after the timeout")
        assert messages[-1]["status"] == "completed"
        assert messages[-2]["role"] == "tool" and messages[-2]["status"] == "error"
        for said in (messages[-2]["content"], messages[-1]["content"]):  # the tool result, the answer
            assert "timed out" in said and "reject" not in said.lower(), said
        r = await decide(c, hitl["interrupt_id"], {"type": "approve"})
        assert r.status_code == 409
        assert r.json()["details"]["decision"]["source"] == "timeout"


async def test_cancel_while_awaiting_approval_resolves_the_interrupt() -> None:
    async with live_server() as srv, srv.client() as c:
        hitl = hitl_of(await ask(c, "SELECT 1"))
        r = await c.post("/api/v1/chat/h1/cancel")
        assert r.status_code == 200
        messages = (await c.get("/api/v1/sessions/h1/messages")).json()["messages"]
        assert messages[-1]["status"] == "cancelled"
        r = await decide(c, hitl["interrupt_id"], {"type": "approve"})
        assert r.status_code == 409 and r.json()["details"]["decision"]["source"] == "cancel"


async def test_a_write_is_refused_before_approval_and_the_data_is_unchanged() -> None:
    """As the LLM engine does: nobody is asked to approve what the read-only database cannot run."""
    async with live_server() as srv, srv.client() as c:
        before = await _count_orders(c, "w1")
        body = await ask(c, "DELETE FROM orders", "w2")
        assert body["status"] == "completed" and not events_of(body, "hitl"), body
        call = events_of(body, "tool_call")[0]
        assert call["tool_args"]["read_only"] is False and call["tool_args"]["statement_type"] == "DELETE"
        result = events_of(body, "tool_result")[0]
        assert result["status"] == "error" and "only read-only queries" in result["result"]
        assert "refused before approval" in body["content"]
        assert await _count_orders(c, "w3") == before > 0


async def test_a_one_row_result_is_said_as_one_row() -> None:
    async with live_server(make_settings(hitl_policy="never")) as srv, srv.client() as c:
        body = await ask(c, "SELECT COUNT(*) AS n FROM orders")
        assert "The query returned 1 row." in body["content"], body["content"]


async def _count_orders(c: httpx.AsyncClient, session_id: str) -> int:
    hitl = hitl_of(await ask(c, "SELECT COUNT(*) FROM orders", session_id))
    body = (await decide(c, hitl["interrupt_id"], {"type": "approve"}, session_id)).json()
    return int(events_of(body, "tool_result")[0]["data"]["table"]["rows"][0][0])


@pytest.mark.parametrize(("policy", "sql", "asks"), [
    ("never", "SELECT 1", False), ("never", "DELETE FROM orders", False),
    ("writes", "SELECT 1", False), ("always", "SELECT 1", True),
    # a write: refused before approval on the read-only demo database, whatever the policy
    ("writes", "DELETE FROM orders", False), ("always", "DELETE FROM orders", False),
])
async def test_hitl_policy_decides_what_needs_approval(policy: str, sql: str, asks: bool) -> None:
    async with live_server(make_settings(hitl_policy=policy)) as srv, srv.client() as c:
        body = await ask(c, sql)
        assert (body["status"] == "awaiting_approval") is asks
        if not asks:
            assert body["status"] == "completed"
            assert events_of(body, "tool_result")


async def test_rows_are_capped_and_marked_truncated() -> None:
    async with live_server(make_settings(sql_max_rows=7, hitl_policy="never")) as srv, srv.client() as c:
        body = await ask(c, "SELECT * FROM orders")
        table = events_of(body, "tool_result")[0]["data"]["table"]
        assert len(table["rows"]) == 7 and table["truncated"] is True
