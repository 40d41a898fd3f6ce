"""Charts decided by the server: a tool_result whose table suits one carries `data.chart` over REST and
WebSocket, and the stored tool message keeps it for a history reload (PROTOCOL.md, "Charts")."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.test_mysql_server import mysql_settings
from tests.mysqldb import fresh_database
from tests.support import live_server, ws_connect

pytestmark = pytest.mark.integration

BY_COUNTRY = "SELECT country, COUNT(*) AS n FROM customers GROUP BY country"
BY_MONTH = "SELECT substr(order_date, 1, 7) AS month, SUM(quantity) AS items FROM orders GROUP BY month ORDER BY month"


async def ask_and_approve(c: httpx.AsyncClient, sql: str, session_id: str) -> dict[str, Any]:
    asked = await c.post("/api/v1/chat", json={"message": sql, "session_id": session_id})
    assert asked.status_code == 200 and asked.json()["status"] == "awaiting_approval", asked.text
    interrupt_id = asked.json()["events"][-1]["data"]["interrupt_id"]
    done = await c.post(f"/api/v1/chat/{session_id}/hitl",
                        json={"interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]})
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    [result] = [e["data"] for e in done.json()["events"] if e["event_type"] == "tool_result"]
    return dict(result)


def assert_country_bars(data: dict[str, Any]) -> None:
    table, chart = data["table"], data["chart"]
    assert table["columns"] == ["country", "n"]
    assert chart["mark"]["type"] == "bar"
    assert chart["encoding"]["x"]["field"] == "country" and chart["encoding"]["y"]["field"] == "n"
    assert chart["data"] == {"values": [{"country": country, "n": n} for country, n in table["rows"]]}


async def stored_tool_message(c: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    messages = (await c.get(f"/api/v1/sessions/{session_id}/messages")).json()["messages"]
    [tool] = [m for m in messages if m["role"] == "tool"]
    return dict(tool)


async def test_a_group_by_over_rest_gets_a_bar_chart_of_its_rows_and_the_stored_message_keeps_it() -> None:
    async with live_server() as srv, srv.client() as c:
        result = await ask_and_approve(c, BY_COUNTRY, "c1")

        assert_country_bars(result["data"])
        stored = await stored_tool_message(c, "c1")
        assert stored["metadata"]["chart"] == result["data"]["chart"]
        assert stored["metadata"]["table"] == result["data"]["table"]


async def test_a_group_by_over_the_socket_gets_the_same_bar_chart() -> None:
    async with live_server() as srv, ws_connect(srv, "c2") as ws, srv.client() as c:
        await ws.recv()
        await ws.send("chat", message=BY_COUNTRY)
        hitl = (await ws.until("hitl"))[-1]["data"]
        await ws.send("hitl_decision", interrupt_id=hitl["interrupt_id"], decisions=[{"type": "approve"}])
        frames = await ws.until("done")

        result = next(f for f in frames if f["event_type"] == "tool_result")["data"]
        assert_country_bars(result["data"])
        assert (await stored_tool_message(c, "c2"))["metadata"]["chart"] == result["data"]["chart"]


async def test_a_monthly_series_gets_a_line_chart_with_a_time_axis() -> None:
    async with live_server() as srv, srv.client() as c:
        chart = (await ask_and_approve(c, BY_MONTH, "c3"))["data"]["chart"]

        assert chart["mark"]["type"] == "line"
        assert chart["encoding"]["x"] == {"field": "month", "type": "temporal", "title": "month"}


async def test_a_table_of_plain_rows_gets_no_chart() -> None:
    async with live_server() as srv, srv.client() as c:
        result = await ask_and_approve(c, "SELECT name, city FROM customers ORDER BY id LIMIT 5", "c4")

        assert "chart" not in result["data"] and result["data"]["table"]["row_count"] == 5
        assert "chart" not in (await stored_tool_message(c, "c4"))["metadata"]


@pytest.mark.mysql
async def test_on_the_mysql_store_the_chart_survives_a_restart() -> None:
    async with fresh_database() as database:
        settings = mysql_settings(database)
        async with live_server(settings) as srv, srv.client() as c:
            result = await ask_and_approve(c, BY_COUNTRY, "c5")
        async with live_server(settings) as srv, srv.client() as c:
            stored = await stored_tool_message(c, "c5")

        assert_country_bars(stored["metadata"])
        assert stored["metadata"]["chart"] == result["data"]["chart"]
