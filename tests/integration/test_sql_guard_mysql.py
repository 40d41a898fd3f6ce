"""The SQL guard against the real MariaDB, with a data account that CAN write (issue 17, items 2, 3, 5, 10).

Each test creates a random account with ALL on a fresh database (and FILE, for LOAD_FILE / INTO OUTFILE),
runs the real server with the LLM engine against FakeOpenAI, so the hostile SQL comes from "the model", and
asserts what reaches the database: refused before approval, nothing written, slept, locked or leaked, and
results bounded. The account is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import TokenType
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError

from dataagent.adapters.agents.sql import SqlDatabase, SqlExecutionError, analyze_sql
from dataagent.adapters.agents.sql.dialects import quoting_dialect
from tests.fakes.openai_server import FakeOpenAI, RecordedRequest
from tests.mysqldb import admin_query, fresh_database, require_mysql
from tests.support import live_server, make_settings, rss_mb
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.mysql]

NO_BACKSLASH = "?init_command=" + quote("SET SESSION sql_mode='NO_BACKSLASH_ESCAPES'")
REPRO = "SELECT 'a\\'; COMMIT; SET SESSION TRANSACTION READ WRITE; UPDATE t SET v=v+1; COMMIT; -- '"
Events = list[dict[str, Any]]


@dataclass
class WritableData:
    database: str
    user: str
    password: str

    def url(self, query: str = "") -> str:
        return f"mysql+asyncmy://{self.user}:{self.password}@127.0.0.1:3306/{self.database}{query}"


@pytest_asyncio.fixture
async def data() -> AsyncIterator[WritableData]:
    """A fresh database with `t(id, v) = (1, 10)` and an account that can write it (and FILE), dropped after."""
    require_mysql()
    async with fresh_database("dataagent_guard") as database:
        user, password = f"dg_{secrets.token_hex(5)}", secrets.token_hex(12)
        await admin_query(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY, v INT)")
        await admin_query(f"INSERT INTO `{database}`.t VALUES (1, 10)")
        await admin_query(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        try:
            await admin_query(f"GRANT ALL ON `{database}`.* TO '{user}'@'%'")
            await admin_query(f"GRANT FILE ON *.* TO '{user}'@'%'")
            yield WritableData(database, user, password)
        finally:
            await admin_query(f"DROP USER IF EXISTS '{user}'@'%'")


def settings_for(fake: FakeOpenAI, url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "agent": "llm", "llm_base_url": fake.base_url, "llm_api_key": "sk-test", "llm_model": "fake-model",
        "llm_timeout": 10, "data_url": url, "sql_read_only": False, "hitl_policy": "writes", "sql_timeout": 20,
    }
    values.update(overrides)
    return make_settings(**values)


async def ask(client: httpx.AsyncClient, message: str, session_id: str = "guard") -> Events:
    r = await client.post("/api/v1/chat", json={"message": message, "session_id": session_id})
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def decide(client: httpx.AsyncClient, events: Events, session_id: str = "guard") -> Events:
    [interrupt] = [e["data"]["interrupt_id"] for e in events if e["event_type"] == "hitl"]
    body = {"interrupt_id": interrupt, "decisions": [{"type": "approve"}]}
    r = await client.post(f"/api/v1/chat/{session_id}/hitl", json=body)
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def of(events: Events, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["event_type"] == kind]


def tool_message(request: RecordedRequest, call_id: str) -> str:
    [content] = [m["content"] for m in request.messages if m["role"] == "tool" and m["tool_call_id"] == call_id]
    return str(content)


async def value_of_v(data: WritableData) -> int:
    [(v,)] = await admin_query(f"SELECT v FROM `{data.database}`.t WHERE id = 1")
    return int(v)


async def run_refused(fake: FakeOpenAI, settings: Any, sql: str) -> tuple[Events, str]:
    """The model proposes `sql`; returns the run's events and what the model was told."""
    fake.add_tool_calls([("call_x", "run_sql", {"sql": sql})])
    fake.add_text("Understood.")
    async with live_server(settings) as srv, srv.client() as client:
        events = await ask(client, "do it")
    assert of(events, "hitl") == [], "refused statements never reach approval"
    [result] = of(events, "tool_result")
    assert result["status"] == "error" and result["result"].startswith("Refused: "), result
    assert of(events, "done")[0]["status"] == "completed"
    told = tool_message(fake.requests[1], "call_x")
    assert told == result["result"]
    return events, told


# ------------------------------------------------------------------------------ item 3: multi-statements


async def test_the_escaping_repro_is_refused_and_the_row_is_unchanged(
    fake_openai: FakeOpenAI, data: WritableData
) -> None:
    settings = settings_for(fake_openai, data.url(NO_BACKSLASH))

    _, told = await run_refused(fake_openai, settings, REPRO)

    assert "transaction control (COMMIT)" in told
    assert await value_of_v(data) == 10


async def test_the_data_connection_has_no_multi_statements(data: WritableData) -> None:
    db = SqlDatabase(data.url(), read_only=False)
    try:
        with pytest.raises(SqlExecutionError, match="1064"):  # the server's own syntax error
            await db._execute("SELECT 1; UPDATE t SET v = v + 1")  # bypasses the parser
    finally:
        await db.close()
    assert await value_of_v(data) == 10


async def test_the_analysis_reads_quotes_in_the_servers_sql_mode(fake_openai: FakeOpenAI, data: WritableData) -> None:
    fake_openai.add_tool_calls([("call_path", "run_sql", {"sql": "SELECT 'c:\\' AS path, v FROM t"})])
    fake_openai.add_text("A path.")
    async with live_server(settings_for(fake_openai, data.url(NO_BACKSLASH))) as srv, srv.client() as client:
        events = await ask(client, "path")  # a read in NO_BACKSLASH_ESCAPES (unterminated in the default mode)
    assert of(events, "tool_call")[0]["tool_args"]["read_only"] is True and of(events, "hitl") == []
    assert of(events, "tool_result")[0]["data"]["table"]["rows"] == [["c:\\", 10]]


async def test_an_edit_into_a_refused_statement_is_refused(fake_openai: FakeOpenAI, data: WritableData) -> None:
    fake_openai.add_tool_calls([("call_e", "run_sql", {"sql": "SELECT v FROM t"})])
    fake_openai.add_text("Fine.")
    async with live_server(settings_for(fake_openai, data.url(), hitl_policy="always")) as srv, srv.client() as client:
        asked = await ask(client, "v?")
        [interrupt] = [e["data"]["interrupt_id"] for e in asked if e["event_type"] == "hitl"]
        edit = {"type": "edit", "args": {"sql": "SELECT 1 /*!, (SELECT GROUP_CONCAT(User) FROM mysql.user) */"}}
        r = await client.post("/api/v1/chat/guard/hitl", json={"interrupt_id": interrupt, "decisions": [edit]})
    [result] = of(r.json()["events"], "tool_result")
    assert result["status"] == "error" and "\n\nRefused: executable comments" in result["result"]


@pytest.mark.parametrize("sql", [
    "SET SESSION TRANSACTION READ WRITE", "START TRANSACTION", "SAVEPOINT s1", "XA START 'x'",
    "SET @@session.sql_mode = ''",
])
async def test_transaction_control_and_set_are_refused_also_on_a_writable_source(
    fake_openai: FakeOpenAI, data: WritableData, sql: str
) -> None:
    _, told = await run_refused(fake_openai, settings_for(fake_openai, data.url()), sql)
    assert "transaction control" in told or "SET statements" in told


# ------------------------------------------------------------------------ item 2: executable comments


async def test_an_executable_sleep_is_refused_without_sleeping(fake_openai: FakeOpenAI, data: WritableData) -> None:
    started = time.monotonic()
    _, told = await run_refused(fake_openai, settings_for(fake_openai, data.url()), "SELECT 1 /*!, SLEEP(3) */")
    assert "executable comments" in told
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("sql", [
    "SELECT 1 /*!, GET_LOCK('{lock}', 0) */", "SELECT 1 /*M!, GET_LOCK('{lock}', 0) */",
    "SELECT 1 /*!50001 , GET_LOCK('{lock}', 0) */",
])
async def test_an_executable_lock_is_refused_and_the_lock_stays_free(
    fake_openai: FakeOpenAI, data: WritableData, sql: str
) -> None:
    lock = f"guard_{secrets.token_hex(4)}"
    _, told = await run_refused(fake_openai, settings_for(fake_openai, data.url()), sql.format(lock=lock))
    assert "executable comments" in told
    assert await admin_query("SELECT IS_FREE_LOCK(%s)", (lock,)) == [(1,)]


async def test_load_file_and_into_outfile_in_executable_comments_are_refused(
    fake_openai: FakeOpenAI, data: WritableData
) -> None:
    [(hostname,)] = await admin_query("SELECT LOAD_FILE('/etc/hostname')")
    assert hostname is not None, "the repro needs secure_file_priv to allow /etc (MariaDB's default)"
    events, told = await run_refused(
        fake_openai, settings_for(fake_openai, data.url()), "SELECT 1 /*!, LOAD_FILE('/etc/hostname') */ AS f")
    assert hostname.decode().strip() not in json.dumps(events)

    target = f"/tmp/dataagent_guard_{secrets.token_hex(6)}"
    fake_openai.requests.clear()
    outfile = f"SELECT v FROM t /*! INTO OUTFILE '{target}' */"
    await run_refused(fake_openai, settings_for(fake_openai, data.url()), outfile)
    assert await admin_query("SELECT LOAD_FILE(%s) IS NULL", (target,)) == [(1,)]


# ------------------------------------------------------------------ item 2: no session state survives


async def test_an_approved_lock_is_free_right_after_the_query(fake_openai: FakeOpenAI, data: WritableData) -> None:
    lock = f"guard_{secrets.token_hex(4)}"
    locking = f"SELECT GET_LOCK('{lock}', 0) AS got, @kept := 7 AS k"
    fake_openai.add_tool_calls([("call_lock", "run_sql", {"sql": locking})])
    fake_openai.add_tool_calls([("call_tmp", "run_sql", {"sql": "CREATE TEMPORARY TABLE scratch (a INT)"})])
    fake_openai.add_tool_calls([("call_var", "run_sql", {"sql": "SELECT @kept AS v"})])
    fake_openai.add_tool_calls([("call_read", "run_sql", {"sql": "SELECT * FROM scratch"})])
    fake_openai.add_text("Done.")
    settings = settings_for(fake_openai, data.url(), hitl_policy="always")
    async with live_server(settings) as srv, srv.client() as client:
        asked = await ask(client, "lock it")
        locked = await decide(client, asked)
        assert of(locked, "tool_result")[0]["data"]["table"]["rows"] == [[1, 7]]
        assert await admin_query("SELECT IS_FREE_LOCK(%s)", (lock,)) == [(1,)]
        created = await decide(client, locked)
        assert of(created, "tool_result")[0]["status"] == "success"
        variable = await decide(client, created)
        read = await decide(client, variable)
    assert of(variable, "tool_result")[0]["data"]["table"]["rows"] == [[None]]
    scratch = of(read, "tool_result")[0]
    assert scratch["status"] == "error" and "doesn't exist" in scratch["result"]
    assert of(read, "done")[0]["status"] == "completed"


# ----------------------------------------------------------------- item 10: accounts and other sessions


@pytest.mark.parametrize("sql", [
    "SHOW GRANTS", "SHOW CREATE USER CURRENT_USER", "SHOW FULL PROCESSLIST", "SHOW PRIVILEGES",
    "SELECT User, Password, authentication_string FROM mysql.user", "SELECT * FROM `MySQL`.`global_priv`",
    "SELECT * FROM information_schema.USER_PRIVILEGES", "SELECT * FROM INFORMATION_SCHEMA.`processlist`",
    "SELECT * FROM performance_schema.threads", "SHOW TABLES FROM mysql",
])
async def test_statements_that_reveal_accounts_are_refused_before_approval(
    fake_openai: FakeOpenAI, data: WritableData, sql: str
) -> None:
    [(password_hash,)] = await admin_query("SELECT PASSWORD(%s)", (data.password,))
    events, told = await run_refused(fake_openai, settings_for(fake_openai, data.url(), hitl_policy="never"), sql)
    assert "not allowed" in told
    assert password_hash not in json.dumps(events) and data.user not in told


# ------------------------------------------------------------------------------ item 5: result bounds

THREE_BIG_ROWS = "SELECT REPEAT('x', 10000000) AS big FROM seq_1_to_3"


async def test_three_rows_of_ten_megabytes_give_a_bounded_table(fake_openai: FakeOpenAI, data: WritableData) -> None:
    fake_openai.add_tool_calls([("call_big", "run_sql", {"sql": THREE_BIG_ROWS})])
    fake_openai.add_text("Big.")
    settings = settings_for(fake_openai, data.url(), hitl_policy="never")
    async with live_server(settings) as srv, srv.client() as client:
        before = rss_mb(os.getpid())
        r = await client.post("/api/v1/chat", json={"message": "big", "session_id": "big"})
        after = rss_mb(os.getpid())
        history = await client.get("/api/v1/sessions/big/messages")
    events = r.json()["events"]
    [result] = of(events, "tool_result")
    table = result["data"]["table"]
    assert table["truncated"] is True and table["row_count"] == 3
    assert all(len(row[0].encode()) <= 65536 + 3 for row in table["rows"])
    assert "cut by size" in result["result"] and "cut by size" in tool_message(fake_openai.requests[1], "call_big")
    assert len(r.content) < 1024 * 1024 and len(history.content) < 1024 * 1024
    print(f"\nresponse {len(r.content)} bytes, history {len(history.content)} bytes, "
          f"test process RSS {before:.0f} -> {after:.0f} MiB")
    assert after - before < 100


async def test_an_early_stop_neither_reads_nor_holds_the_rest(fake_openai: FakeOpenAI, data: WritableData) -> None:
    marker = f"huge_{secrets.token_hex(4)}"
    huge = f"SELECT seq AS {marker}, REPEAT('y', 1000000) AS filler FROM seq_1_to_100000"  # 100 GB if read
    fake_openai.add_tool_calls([("call_huge", "run_sql", {"sql": huge})])
    fake_openai.add_text("Huge.")
    settings = settings_for(fake_openai, data.url(), hitl_policy="never", sql_timeout=15)
    async with live_server(settings) as srv, srv.client() as client:
        started = time.monotonic()
        events = await ask(client, "huge", "huge")
        took = time.monotonic() - started
    [result] = of(events, "tool_result")
    assert result["status"] == "success" and result["data"]["table"]["truncated"] is True
    assert took < 10, f"the rest of the result was read ({took:.1f} s)"

    async def abandoned_query_gone() -> bool:
        running = await admin_query(
            "SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO NOT LIKE '%%PROCESSLIST%%'")
        return not any(marker in str(info) for (info,) in running)

    await eventually(abandoned_query_gone, 5, interval=0.05, what="the abandoned query's end on the server")


# ------------------------------------------------- the analysis and the server read quotes alike


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.text(alphabet="ab'\\\";-/*!#\n ", max_size=12), no_backslash=st.booleans())
def test_property_what_the_analysis_reads_as_one_string_the_server_runs_as_one_string(
    content: str, no_backslash: bool
) -> None:
    sql = f"SELECT '{content}' AS s"
    mode = "NO_BACKSLASH_ESCAPES" if no_backslash else "STRICT_TRANS_TABLES"
    try:
        tokens = Dialect.get_or_raise(quoting_dialect("mysql", mode)).tokenize(sql)
    except TokenError:
        return
    if [t.token_type for t in tokens] != [TokenType.SELECT, TokenType.STRING, TokenType.ALIAS, TokenType.VAR]:
        return
    assert analyze_sql(sql, quoting_dialect("mysql", mode)).read_only

    async def columns() -> list[str]:
        query = "?init_command=" + quote(f"SET SESSION sql_mode='{mode}'")
        db = SqlDatabase(f"mysql+asyncmy://root@127.0.0.1:3306/{query}", read_only=False)
        try:
            return (await db._execute(sql)).columns  # the server's reading, without the parser
        finally:
            await db.close()

    assert asyncio.run(columns()) == ["s"]
