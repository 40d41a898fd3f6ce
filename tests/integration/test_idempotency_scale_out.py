"""Idempotent requests and the session queue across two server processes sharing MariaDB and Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.test_scale_out import Cluster, cluster, new_sid  # noqa: F401 - the fixture
from tests.support.polling import eventually, wait_for_active_run

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]


async def questions(c: httpx.AsyncClient, sid: str) -> list[str]:
    messages = (await c.get(f"/api/v1/sessions/{sid}/messages")).json()["messages"]
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_the_same_chat_on_both_workers_at_once_is_one_run(cluster: Cluster) -> None:  # noqa: F811
    sid = new_sid("idem")
    body, headers = {"message": "once", "session_id": sid}, {"Idempotency-Key": f"k-{sid}"}
    async with cluster.a.client() as ca, cluster.b.client() as cb:
        ra, rb = await asyncio.gather(ca.post("/api/v1/chat", json=body, headers=headers),
                                      cb.post("/api/v1/chat", json=body, headers=headers))
        assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
        assert ra.json()["run_id"] == rb.json()["run_id"] and ra.json()["message_id"] == rb.json()["message_id"]
        again = await cb.post("/api/v1/chat", json=body, headers=headers)
        assert again.json()["run_id"] == ra.json()["run_id"] and again.json()["content"] == ra.json()["content"]
        other = await ca.post("/api/v1/chat", json={**body, "message": "other"}, headers=headers)
        assert other.status_code == 422 and other.json()["error_code"] == "idempotency_key_reused"
        assert await questions(ca, sid) == ["once"]


async def test_a_question_queued_through_b_runs_after_the_answer_running_on_a(cluster: Cluster) -> None:  # noqa: F811
    sid = new_sid("queue")
    async with cluster.a.client() as ca, cluster.b.client() as cb:
        first = await ca.post("/api/v1/chat", json={"message": "one", "session_id": sid, "wait": False})
        assert first.status_code == 202
        await wait_for_active_run(cb, sid)
        r = await cb.post("/api/v1/chat", json={"message": "two", "session_id": sid,
                                                "multitask_strategy": "enqueue"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["events"][0]["event_type"] == "queued"
        assert await eventually(lambda: questions(cb, sid), 10.0, what="both questions") == ["one", "two"]
