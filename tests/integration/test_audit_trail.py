"""The SQL audit trail through a real server (demo engine on the demo database), on memory and on MariaDB:
every decision path leaves exactly one record with the right fields; GET /api/v1/audit is for admin keys only;
records outlive their session; the retention sweep deletes old ones; JSON lines export the same records."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataagent.domain.audit import AuditOutcome, AuditRecord, sql_hash
from dataagent.entrypoints.settings import Settings
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.test_readme import readme_block, run_shell
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.support import cli_command, free_port, spawn, wait_healthy
from tests.support.polling import eventually
from tests.support.servers import KEY_B, LiveServer, live_server, make_settings

pytestmark = pytest.mark.integration

POLICY = """
policies:
  bob:
    tables:
      products: {}
"""
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

Serve = Callable[..., AbstractAsyncContextManager[LiveServer]]


@pytest.fixture(params=["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
async def serve(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Serve]:
    """Start a server on the parametrised store: alice holds `admin`, bob may read only products."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    database: str | None = None

    def settings(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"key_scopes": ["alice:admin"], "data_policy": str(policy)}
        if database is not None:
            values.update(session_store="mysql", mysql_host=MYSQL_HOST, mysql_port=MYSQL_PORT,
                          mysql_database=database)
        return make_settings(**(values | overrides))

    def start(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return live_server(settings(**overrides))

    if request.param == "memory":
        yield start
        return
    async with fresh_database("dataagent_audit") as name:
        database = name
        yield start


async def ask(c: httpx.AsyncClient, session_id: str, message: str) -> dict[str, Any]:
    r = await c.post("/api/v1/chat", json={"message": message, "session_id": session_id})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def decide(c: httpx.AsyncClient, session_id: str, body: dict[str, Any], decision: dict[str, Any]) -> Any:
    interrupt = body["events"][-1]["data"]["interrupt_id"]
    r = await c.post(f"/api/v1/chat/{session_id}/hitl", json={"interrupt_id": interrupt, "decisions": [decision]})
    assert r.status_code == 200, r.text
    return r.json()


async def records(c: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    r = await c.get("/api/v1/audit", params={"session_id": session_id})
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["records"]
    return found


async def the_record(c: httpx.AsyncClient, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
    found = await records(c, session_id)
    assert len(found) == 1, found
    record = found[0]
    assert record["session_id"] == session_id and record["run_id"] == body["run_id"]
    assert record["sql_hash"] == sql_hash(record["sql"]) and record["end_user"] is None
    return record


async def test_every_decision_path_leaves_exactly_one_record_with_its_fields(serve: Serve) -> None:
    async with serve() as srv, srv.client() as c, srv.client(KEY_B) as bob:
        # approve
        body = await ask(c, "ok", "select name from customers order by id limit 3")
        await decide(c, "ok", body, {"type": "approve"})
        r = await the_record(c, "ok", body)
        assert (r["outcome"], r["decision"], r["decided_by"], r["principal"]) == ("ran", "approve", "alice", "alice")
        assert r["statement_type"] == "SELECT" and r["read_only"] is True and r["tables"] == ["customers"]
        assert r["rows"] == 3 and r["duration_ms"] >= 0 and r["error"] is None and r["cancelled"] is False
        assert r["executed_sql"] == r["sql"] and r["decided_at"] >= r["created_at"]

        # edit: the edited text is kept beside the proposed one, and is what ran
        body = await ask(c, "ed", "select * from customers")
        edited = "select id from customers order by id limit 2"
        await decide(c, "ed", body, {"type": "edit", "args": {"sql": edited}})
        r = await the_record(c, "ed", body)
        assert (r["outcome"], r["decision"], r["decided_by"]) == ("ran", "edit", "alice")
        assert r["sql"] == "select * from customers" and r["edited_sql"] == edited and r["executed_sql"] == edited
        assert r["rows"] == 2

        # reject, with the client's message
        body = await ask(c, "rj", "select * from orders")
        await decide(c, "rj", body, {"type": "reject", "message": "too broad"})
        r = await the_record(c, "rj", body)
        assert (r["outcome"], r["decision"], r["decided_by"], r["reason"]) == ("rejected", "reject", "alice",
                                                                                 "too broad")
        assert r["executed_sql"] is None and r["rows"] is None

        # the SQL guard refuses before any approval
        body = await ask(c, "gd", "sql: SET @a = 1")
        assert body["status"] == "completed"
        r = await the_record(c, "gd", body)
        assert (r["outcome"], r["decision"], r["decided_by"]) == ("refused", "refused_guard", "server")
        assert r["reason"] and r["executed_sql"] is None

        # bob's data policy refuses a table it does not allow, before approval
        body = await ask(bob, "pl", "select * from customers")
        r = await the_record(c, "pl", body)
        assert (r["outcome"], r["decision"], r["principal"]) == ("refused", "refused_policy", "bob")

        # a write on the read-only demo database: refused before approval, as the LLM engine does
        body = await ask(c, "wr", "insert into products (name) values ('x')")
        assert body["status"] == "completed" and all(e["event_type"] != "hitl" for e in body["events"])
        r = await the_record(c, "wr", body)
        assert (r["outcome"], r["decision"], r["decided_by"], r["read_only"], r["statement_type"]) == (
            "refused", "refused_guard", "server", False, "INSERT")
        assert r["executed_sql"] is None

        # the database fails the statement
        body = await ask(c, "fl", "select * from no_such_table")
        await decide(c, "fl", body, {"type": "approve"})
        r = await the_record(c, "fl", body)
        assert (r["outcome"], r["decision"]) == ("failed", "approve") and r["error"]


async def test_the_llm_engines_read_only_screen_and_an_approval_in_one_run(
    serve: Serve, fake_openai: FakeOpenAI,
) -> None:
    fake_openai.add_tool_calls([("c1", "run_sql", {"sql": "DELETE FROM customers"})])
    fake_openai.add_tool_calls([("c2", "run_sql", {"sql": "SELECT count(*) AS n FROM customers"})])
    fake_openai.add_text("There are some.")
    llm = {"agent": "llm", "llm_base_url": fake_openai.base_url, "llm_api_key": "sk-test", "llm_timeout": 10}
    async with serve(**llm) as srv, srv.client() as c:
        body = await ask(c, "llm", "clean up, then count")
        assert body["status"] == "awaiting_approval"
        done = await decide(c, "llm", body, {"type": "approve"})
        assert done["status"] == "completed"
        refused, ran = await records(c, "llm")
    assert (refused["sql"], refused["outcome"], refused["decision"], refused["decided_by"]) == (
        "DELETE FROM customers", "refused", "refused_guard", "server")
    assert "read-only" in refused["reason"] and refused["read_only"] is False
    assert (ran["outcome"], ran["decision"], ran["decided_by"], ran["rows"]) == ("ran", "approve", "alice", 1)
    assert refused["run_id"] == ran["run_id"] == body["run_id"]


async def test_cancels_while_waiting_and_while_running_are_recorded(serve: Serve) -> None:
    async with serve() as srv, srv.client() as c, srv.client() as other:
        body = await ask(c, "cw", "select * from products")
        [waiting] = await records(c, "cw")  # stored before the wait, so visible while it lasts
        assert (waiting["outcome"], waiting["decision"], waiting["decided_at"]) == ("pending", None, None)
        r = await other.post("/api/v1/chat/cw/cancel")
        assert r.status_code == 200, r.text
        record = await eventually(lambda: _outcome(c, "cw", "cancelled"), what="the waiting statement cancelled")
        assert record["decision"] == "cancel" and record["decided_by"] == "server" and record["cancelled"] is True
        assert record["run_id"] == body["run_id"]

        body = await ask(c, "cr", ENDLESS)
        approving = asyncio.create_task(decide(c, "cr", body, {"type": "approve"}))
        await eventually(lambda: _outcome(other, "cr", "running"), what="the statement running")
        assert (await other.post("/api/v1/chat/cr/cancel")).status_code == 200
        assert (await approving)["status"] == "cancelled"
        record = await eventually(lambda: _outcome(c, "cr", "cancelled"), what="the running statement cancelled")
        assert record["decision"] == "approve" and record["cancelled"] is True and record["duration_ms"] >= 0
        assert len(await records(c, "cr")) == 1


async def _outcome(c: httpx.AsyncClient, session_id: str, outcome: str) -> dict[str, Any] | None:
    found = await records(c, session_id)
    return found[0] if found and found[0]["outcome"] == outcome else None


async def test_a_policy_auto_approval_and_an_estimate_refusal(serve: Serve) -> None:
    async with serve(hitl_policy="never", sql_max_estimated_rows=5) as srv, srv.client() as c:
        body = await ask(c, "au", "select name from customers where id = 1")
        assert body["status"] == "completed"
        r = await the_record(c, "au", body)
        assert (r["outcome"], r["decision"], r["decided_by"], r["rows"]) == ("ran", "auto_approve", "server", 1)

        body = await ask(c, "es", "select * from orders where quantity > 1")
        r = await the_record(c, "es", body)
        assert (r["outcome"], r["decision"]) == ("refused", "refused_estimate")
        assert "DATAAGENT_SQL_MAX_ESTIMATED_ROWS" in r["reason"]


async def test_no_decision_before_the_timeout_is_recorded_as_a_timeout(serve: Serve) -> None:
    async with serve(hitl_timeout=0.3) as srv, srv.client() as c:
        body = await ask(c, "to", "select * from products")
        record = await eventually(lambda: _outcome(c, "to", "timeout"), what="the timeout")
        assert record["decision"] == "timeout" and record["decided_by"] == "server"
        assert record["run_id"] == body["run_id"] and record["executed_sql"] is None


async def test_only_a_key_with_the_admin_scope_reads_the_trail(serve: Serve) -> None:
    async with serve() as srv, srv.client() as c, srv.client(KEY_B) as bob, srv.client(None) as nobody:
        await ask(bob, "b1", "select * from products")
        r = await bob.get("/api/v1/audit")
        assert r.status_code == 403 and r.json()["error_code"] == "forbidden"
        assert (await bob.get("/api/v1/audit", params={"format": "jsonl"})).status_code == 403
        assert (await nobody.get("/api/v1/audit")).status_code == 401
        found = await records(c, "b1")
        assert [x["principal"] for x in found] == ["bob"]
        assert (await c.get("/api/v1/audit", params={"principal": "bob"})).json()["records"] == found
        assert (await c.get("/api/v1/audit", params={"principal": "alice"})).json()["records"] == []


async def test_records_survive_the_deletion_of_their_session(serve: Serve) -> None:
    async with serve() as srv, srv.client() as c:
        body = await ask(c, "gone", "select * from products")
        await decide(c, "gone", body, {"type": "approve"})
        assert (await c.delete("/api/v1/sessions/gone")).status_code == 204
        assert (await c.get("/api/v1/sessions/gone")).status_code == 404
        record = await the_record(c, "gone", body)
        assert record["outcome"] == "ran"


async def test_the_retention_sweep_deletes_records_older_than_the_retention(serve: Serve) -> None:
    async with serve(audit_retention=1, expiry_interval=0.1) as srv, srv.client() as c:
        now = datetime.now(UTC)
        log = srv.container.audit_log()
        for audit_id, age in [("aud_old", timedelta(days=1, minutes=1)), ("aud_recent", timedelta(hours=23))]:
            await log.save(AuditRecord(audit_id, now - age, "s-old", "run_old", "alice", "SELECT 1", "SELECT", True))

        async def swept() -> bool:
            return await log.get("aud_old") is None

        await eventually(swept, timeout=5, what="the old record deleted")
        assert [r["audit_id"] for r in await records(c, "s-old")] == ["aud_recent"]


async def test_pages_by_cursor_and_json_lines_give_the_same_records(serve: Serve) -> None:
    async with serve(hitl_policy="never") as srv, srv.client() as c:
        for n in range(5):
            await ask(c, f"p{n}", f"select {n} as n")
        paged: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"after": after} if after else {})
            page = (await c.get("/api/v1/audit", params=params)).json()
            paged += page["records"]
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            after = page["next_cursor"]
        assert [r["session_id"] for r in paged] == [f"p{n}" for n in range(5)]
        for export in ({"params": {"format": "jsonl"}}, {"headers": {"Accept": "application/x-ndjson"}}):
            r = await c.get("/api/v1/audit", **export)  # type: ignore[arg-type]
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
            assert [json.loads(line) for line in r.text.splitlines()] == paged
        bad = await c.get("/api/v1/audit", params={"after": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["error_code"] == "validation_error"
        naive = await c.get("/api/v1/audit", params={"since": "2026-01-01T00:00:00"})
        assert naive.status_code == 422
        extremes = {"since": "0001-01-01T00:00:00+14:00", "until": "9999-12-31T23:59:59.999999-12:00"}
        wide = await c.get("/api/v1/audit", params=extremes)
        assert wide.status_code == 200, wide.text
        assert [r["audit_id"] for r in wide.json()["records"]] == [r["audit_id"] for r in paged]
        far = await c.get("/api/v1/audit", params={"after": "99999999999999999_\U0001f600" + "x" * 150})
        assert far.status_code == 200 and far.json()["records"] == []
        window = await c.get("/api/v1/audit", params={"since": paged[1]["created_at"], "until": paged[3]["created_at"]})
        assert [r["audit_id"] for r in window.json()["records"]] == [paged[1]["audit_id"], paged[2]["audit_id"]]


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the README block needs curl and jq")
def test_the_readme_audit_block_works_verbatim(tmp_path: Path) -> None:
    port = free_port()
    env = {"DATAAGENT_API_KEYS": "demo:demo-key-123", "DATAAGENT_KEY_SCOPES": "demo:admin",
           "DATAAGENT_HITL_POLICY": "never"}
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], env, port)
    try:
        wait_healthy(server)
        out = run_shell(readme_block("audit-session"), port, tmp_path)
    finally:
        server.stop()
    assert '"principal": "demo"' in out and '"decision": "auto_approve"' in out and '"outcome": "ran"' in out
    assert '"rows": ' in out and '{"audit_id":"aud_' in out


@pytest.mark.mysql
async def test_a_restart_on_mysql_marks_statements_cut_off_by_the_previous_process_as_failed() -> None:
    async with fresh_database("dataagent_audit") as database:
        settings = make_settings(session_store="mysql", mysql_host=MYSQL_HOST, mysql_port=MYSQL_PORT,
                                 mysql_database=database, key_scopes=["alice:admin"])
        async with live_server(settings) as srv:  # the previous process, which left a statement running
            await srv.container.audit_log().save(AuditRecord(
                "aud_cut", datetime.now(UTC), "s-cut", "run_cut", "alice", "SELECT 1", "SELECT", True,
                outcome=AuditOutcome.RUNNING))
        async with live_server(settings) as srv, srv.client() as c:
            [record] = await records(c, "s-cut")
    assert record["outcome"] == "failed" and record["error"].startswith("interrupted")
