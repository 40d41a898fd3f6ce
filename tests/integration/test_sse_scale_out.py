"""Server-sent events across two server processes sharing MariaDB and Redis: a stream dropped on one worker
resumes on the other, and cancel / approvals sent to the other worker reach the stream (PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from httpx_sse import aconnect_sse

from tests.integration.test_scale_out import delete_keys, new_prefix, server_env, start_server
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, create_database, drop_database
from tests.services import REDIS_HOST, REDIS_PORT, require_service
from tests.support import ServerProcess, wait_healthy
from tests.support.frames import assert_contiguous, kinds, stored_answer, text_of

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]

SQL = "select name, city from customers order by id limit 5"


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    database = asyncio.run(create_database("dataagent_sse"))
    env = server_env(database, REDIS_PORT, prefix)
    servers = [start_server(env), start_server(env)]
    try:
        for server in servers:
            wait_healthy(server)
        yield Pair(*servers)
    finally:
        for server in servers:
            server.stop()
        asyncio.run(drop_database(database))
        delete_keys(prefix)


def new_sid() -> str:
    return f"sse-{secrets.token_hex(4)}"


async def test_a_stream_dropped_on_a_resumes_on_b_with_last_event_id_and_gets_every_later_event_once(
    pair: Pair,
) -> None:
    sid = new_sid()
    async with pair.a.client() as ca, pair.b.client() as cb:
        first: list[dict[str, Any]] = []
        async with aconnect_sse(ca, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": sid}) as es:
            async for event in es.aiter_sse():
                first.append(json.loads(event.data))
                if len(first) == 8:
                    break  # the connection goes; the run does not
        async with aconnect_sse(cb, "GET", f"/api/v1/sessions/{sid}/stream",
                                headers={"Last-Event-ID": str(first[-1]["seq"])}) as es:
            rest = [json.loads(event.data) async for event in es.aiter_sse()]
        assert rest[0]["event_type"] == "connected" and rest[0]["data"]["recovered"] is True
        whole = first + rest[1:]
        assert_contiguous(whole)
        assert kinds(whole).count("run_started") == 1 and kinds(whole).count("done") == 1
        assert whole[-1]["data"]["status"] == "completed"
        assert (await stored_answer(cb, sid))["content"] == text_of(whole)


async def test_cancel_sent_to_b_ends_a_stream_on_a_with_done_cancelled_and_the_partial_kept(pair: Pair) -> None:
    sid = new_sid()
    async with pair.a.client() as ca, pair.b.client() as cb:
        frames: list[dict[str, Any]] = []
        async with aconnect_sse(ca, "POST", "/api/v1/chat/stream", json={"message": "hi", "session_id": sid}) as es:
            async for event in es.aiter_sse():
                frames.append(json.loads(event.data))
                if frames[-1]["event_type"] == "text" and kinds(frames).count("text") == 3:
                    assert (await cb.post(f"/api/v1/chat/{sid}/cancel")).status_code == 200
        assert kinds(frames).count("done") == 1 and frames[-1]["data"]["status"] == "cancelled"
        assert (await stored_answer(ca, sid))["content"] == text_of(frames)


async def test_a_background_run_on_a_is_followed_on_b_and_approved_through_b(pair: Pair) -> None:
    sid = new_sid()
    async with pair.a.client() as ca, pair.b.client() as cb:
        r = await ca.post("/api/v1/chat", json={"message": SQL, "session_id": sid, "wait": False})
        assert r.status_code == 202, r.text
        frames: list[dict[str, Any]] = []
        async with aconnect_sse(cb, "GET", f"/api/v1/sessions/{sid}/stream") as es:  # from its run_started
            async for event in es.aiter_sse():
                frames.append(json.loads(event.data))
                if frames[-1]["event_type"] == "hitl":
                    decision = {"interrupt_id": frames[-1]["data"]["interrupt_id"], "decisions": [{"type": "approve"}]}
                    assert (await cb.post(f"/api/v1/chat/{sid}/hitl", json=decision)).status_code == 200
        events = frames[1:]
        assert events[0]["event_type"] == "run_started" and events[0]["run_id"] == r.json()["run_id"]
        assert_contiguous(events)
        assert kinds(events).count("done") == 1 and events[-1]["data"]["status"] == "completed"
        assert "tool_result" in kinds(events)
