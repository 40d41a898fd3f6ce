"""WebSocket chat: the guarantees of PROTOCOL.md over real sockets against uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.support import KEY_B, live_server, make_settings, ws_connect
from tests.support.frames import assert_contiguous, kinds
from tests.support.polling import eventually
from tests.unit.engines import ScriptedEngine, Step

pytestmark = pytest.mark.integration

LONG = make_settings(demo_chunks=1000, demo_chunk_delay_ms=10)


async def test_connected_comes_first_then_a_streamed_answer_with_numbered_events() -> None:
    async with live_server() as srv, ws_connect(srv, "ws1") as ws:
        connected = await ws.recv()
        assert connected["event_type"] == "connected" and "seq" not in connected
        assert connected["data"]["session_id"] == "ws1" and connected["data"]["active_run_id"] is None
        assert isinstance(connected["data"]["last_seq"], int)
        await ws.send("chat", message="你好 🌏", metadata={"tab": 1})
        frames = await ws.until("done")
        assert kinds(frames)[0] == "run_started" and kinds(frames).count("done") == 1
        texts = [f for f in frames if f["event_type"] == "text"]
        assert len(texts) == 5 + 1 and texts[-1]["data"] == {"content": "", "is_final": True}
        assert all(f["session_id"] == "ws1" and f["run_id"] == frames[0]["data"]["run_id"] for f in frames)
        assert frames[0]["seq"] == connected["data"]["last_seq"] + 1
        assert_contiguous(frames)
        assert "你好 🌏" in "".join(f["data"]["content"] for f in texts)


async def test_done_comes_after_the_answer_is_persisted_and_the_session_is_free() -> None:
    async with live_server() as srv, ws_connect(srv, "ws2") as ws, srv.client() as rest:
        await ws.recv()
        for question in ("one", "two", "three"):
            await ws.send("chat", message=question)
            done = (await ws.until("done"))[-1]["data"]
            # nothing awaited between done and these reads: the answer is already stored
            messages = (await rest.get("/api/v1/sessions/ws2/messages")).json()["messages"]
            assert messages[-1]["message_id"] == done["message_id"]
            assert messages[-1]["status"] == "completed" and question in messages[-1]["content"]
            assert (await rest.get("/api/v1/sessions/ws2")).json()["active_run_id"] is None
        assert (await rest.get("/api/v1/sessions/ws2")).json()["message_count"] == 6


async def test_ping_is_answered_mid_run_before_the_run_ends() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "ws3") as ws:
        await ws.recv()
        await ws.send("chat", message="long")
        await ws.until("text")
        await ws.send("ping")
        frames = await ws.until("pong", timeout=2)
        assert "done" not in kinds(frames)
        assert "seq" not in frames[-1] and frames[-1]["data"] == {}
        await ws.send("cancel")
        await ws.until("done")


async def test_cancel_mid_run_ends_promptly_with_the_partial_answer_kept() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "ws4") as ws, srv.client() as rest:
        await ws.recv()
        await ws.send("chat", message="long")
        before = await ws.until("text")
        sent = time.monotonic()
        await ws.send("cancel")
        after = await ws.until("done", timeout=2)
        assert time.monotonic() - sent < 1.0
        done = after[-1]["data"]
        assert done["status"] == "cancelled" and done["cancelled"] is True and done["reason"] == "user"
        assert set(kinds(after[:-1])) <= {"text"}  # in flight when the cancel was read; then nothing but done
        assert len(after) < 30
        streamed = "".join(f["data"]["content"] for f in before + after if f["event_type"] == "text")
        messages = (await rest.get("/api/v1/sessions/ws4/messages")).json()["messages"]
        assert messages[-1]["status"] == "cancelled" and messages[-1]["content"] == streamed
        assert messages[-1]["message_id"] == done["message_id"]
        assert [m["role"] for m in messages] == ["user", "assistant"]


async def test_a_failing_agent_sends_an_unrecoverable_error_then_exactly_one_done() -> None:
    engine = ScriptedEngine([Step("text", "partial "), Step("fail")])
    async with live_server(engine=engine) as srv, ws_connect(srv, "ws5") as ws, srv.client() as rest:
        await ws.recv()
        await ws.send("chat", message="explode")
        frames = await ws.until("done")
        assert kinds(frames)[-2:] == ["error", "done"]
        error = frames[-2]["data"]
        assert error["error_code"] == "agent_error" and error["recoverable"] is False
        assert "secret internals" not in error["message"]
        assert frames[-1]["data"]["status"] == "failed"
        messages = (await rest.get("/api/v1/sessions/ws5/messages")).json()["messages"]
        assert messages[-1]["status"] == "failed" and messages[-1]["content"] == "partial "
        with pytest.raises(TimeoutError):
            await ws.recv(timeout=0.3)  # and nothing after that done


async def test_hitl_approve_over_the_socket_mid_run() -> None:
    async with live_server() as srv, ws_connect(srv, "ws6") as ws:
        await ws.recv()
        await ws.send("chat", message="SELECT name FROM products ORDER BY id LIMIT 2")
        hitl = (await ws.until("hitl"))[-1]["data"]
        await ws.send("hitl_decision", interrupt_id=hitl["interrupt_id"], decisions=[{"type": "approve"}])
        frames = await ws.until("done")
        assert kinds(frames)[0] == "hitl_resolved"
        table = next(f for f in frames if f["event_type"] == "tool_result")["data"]["data"]["table"]
        assert table["columns"] == ["name"] and table["row_count"] == 2
        assert frames[-1]["data"]["status"] == "completed"


async def test_hitl_edit_and_reject_over_the_socket_without_an_interrupt_id() -> None:
    async with live_server() as srv, ws_connect(srv, "ws7") as ws:
        await ws.recv()
        await ws.send("chat", message="SELECT * FROM customers")
        await ws.until("hitl")
        edit = {"type": "edit", "args": {"sql": "SELECT COUNT(*) AS n FROM orders"}}
        await ws.send("hitl_decision", decisions=[edit])
        frames = await ws.until("done")
        assert next(f for f in frames if f["event_type"] == "tool_result")["data"]["data"]["table"]["columns"] == ["n"]
        await ws.send("chat", message="SELECT * FROM orders")
        await ws.until("hitl")
        await ws.send("hitl_decision", decisions=[{"type": "reject", "message": "not now"}])
        frames = await ws.until("done")
        result = next(f for f in frames if f["event_type"] == "tool_result")["data"]
        assert result["status"] == "error" and "not now" in result["result"]
        assert frames[-1]["data"]["status"] == "completed"


async def test_a_second_decision_is_refused_to_that_socket_alone() -> None:
    async with live_server() as srv, ws_connect(srv, "ws8") as ws:
        await ws.recv()
        await ws.send("chat", message="SELECT 1")
        hitl = (await ws.until("hitl"))[-1]["data"]
        await ws.send("hitl_decision", interrupt_id=hitl["interrupt_id"], decisions=[{"type": "approve"}])
        await ws.until("done")
        await ws.send("hitl_decision", interrupt_id=hitl["interrupt_id"], decisions=[{"type": "reject"}])
        error = await ws.recv()
        assert error["event_type"] == "error" and "seq" not in error
        assert error["data"]["error_code"] == "decision_conflict" and error["data"]["recoverable"] is True


async def test_an_undecided_approval_times_out_as_reject_with_one_done() -> None:
    async with live_server(make_settings(hitl_timeout=0.3)) as srv, ws_connect(srv, "ws9") as ws:
        await ws.recv()
        await ws.send("chat", message="SELECT 1")
        await ws.until("hitl")
        frames = await ws.until("done", timeout=5)
        resolved = frames[0]
        assert resolved["event_type"] == "hitl_resolved"
        assert resolved["data"]["decision"]["type"] == "reject"
        assert resolved["data"]["decision"]["source"] == "timeout"
        assert kinds(frames).count("done") == 1 and frames[-1]["data"]["status"] == "completed"


async def test_bad_frames_get_recoverable_errors_and_the_socket_stays_usable() -> None:
    async with live_server() as srv, ws_connect(srv, "ws10") as ws:
        await ws.recv()
        for raw in ("not json", "[1, 2]", '{"type": "dance", "payload": {}}', '{"type": "chat", "payload": 5}',
                    '{"type": "chat", "payload": {"message": ""}}', '{"type": "chat", "payload": {}}',
                    '{"type": "hitl_decision", "payload": {"decisions": "yes"}}',
                    '{"type": "resume", "payload": {"after_seq": "x"}}'):
            await ws.conn.send(raw)
            error = await ws.recv()
            assert error["event_type"] == "error" and error["data"]["recoverable"] is True, raw
            assert "seq" not in error
        await ws.send("cancel")
        error = await ws.recv()
        assert error["data"]["error_code"] == "no_active_run"
        await ws.send("ping", unknown_key=1)
        assert (await ws.recv())["event_type"] == "pong"
        await ws.send("chat", message="still works", extra="ignored")
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"


async def test_a_second_chat_while_one_runs_is_a_recoverable_run_in_progress() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "ws11") as ws:
        await ws.recv()
        await ws.send("chat", message="long")
        await ws.until("run_started")
        await ws.send("chat", message="again")
        frames = await ws.until("error")
        assert frames[-1]["data"]["error_code"] == "run_in_progress" and "seq" not in frames[-1]
        await ws.send("cancel")
        assert (await ws.until("done"))[-1]["data"]["status"] == "cancelled"


async def test_an_oversized_frame_closes_the_socket_with_1009() -> None:
    async with live_server(make_settings(max_frame_bytes=4096)) as srv, ws_connect(srv, "ws12", max_size=None) as ws:
        await ws.recv()
        await ws.conn.send('{"type": "chat", "payload": {"message": "' + "x" * 8000 + '"}}')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_auth_and_session_id_refusals_close_with_4401_and_4400() -> None:
    async with live_server() as srv:
        for key, sid, code in ((None, "ok", 4401), ("wrong", "ok", 4401), (None, "bad!", 4401),
                               ("key-alpha-0123456789", "x" * 65, 4400), ("key-alpha-0123456789", "bad!", 4400)):
            async with ws_connect(srv, sid, key=key) as ws:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == code, (key, sid)
                assert closed.value.rcvd.reason


async def test_header_auth_works_for_the_socket() -> None:
    async with live_server() as srv:
        url = f"{srv.ws_url}/ws/chat/hdr"
        async with websockets.connect(url, additional_headers={"X-API-Key": KEY_B}) as conn:
            assert '"connected"' in await asyncio.wait_for(conn.recv(), 5)
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY_B}"}) as conn:
            assert '"connected"' in await asyncio.wait_for(conn.recv(), 5)


async def test_two_tabs_both_see_the_whole_run_and_either_can_cancel() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "tabs") as tab1, ws_connect(srv, "tabs") as tab2:
        await tab1.recv()
        await tab2.recv()
        await tab1.send("chat", message="long")
        first1 = await tab1.until("text")
        first2 = await tab2.until("text")
        assert [f["seq"] for f in first1] == [f["seq"] for f in first2]
        await tab2.send("cancel")
        rest1, rest2 = await tab1.until("done"), await tab2.until("done")
        assert [f["seq"] for f in rest1] == [f["seq"] for f in rest2]
        assert rest1[-1]["data"]["status"] == "cancelled"


async def test_a_socket_that_joins_mid_run_gets_the_run_from_its_start() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "join") as tab1:
        await tab1.recv()
        await tab1.send("chat", message="long")
        seen = await tab1.until("text")
        for _ in range(5):
            seen += [await tab1.recv()]
        async with ws_connect(srv, "join") as late:
            connected = await late.recv()
            assert connected["data"]["active_run_id"] == seen[0]["data"]["run_id"]
            caught_up = [await late.recv() for _ in range(len(seen))]
            assert [f["seq"] for f in caught_up] == [f["seq"] for f in seen]
            await late.send("cancel")
            assert (await late.until("done"))[-1]["data"]["status"] == "cancelled"


async def test_a_socket_of_another_key_gets_session_not_found_and_4404() -> None:
    async with live_server() as srv, srv.client() as alice:
        await alice.post("/api/v1/chat", json={"message": "mine", "session_id": "private"})
        async with ws_connect(srv, "private", key=KEY_B) as ws:
            error = await ws.recv()
            assert error["event_type"] == "error" and error["data"]["error_code"] == "session_not_found"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_a_watcher_of_an_unused_id_sees_nothing_of_another_principals_session() -> None:
    settings = make_settings(demo_chunks=50, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv, ws_connect(srv, "race", key=KEY_B) as bob, srv.client() as alice:
        await bob.recv()  # bob watches an id nobody uses yet
        body = (await alice.post("/api/v1/chat", json={"message": "alice's secret", "session_id": "race"})).json()
        assert body["status"] == "completed"
        error = await bob.recv()
        assert error["event_type"] == "error" and error["data"]["error_code"] == "session_not_found"
        with pytest.raises(websockets.ConnectionClosed):
            await bob.recv()


async def test_the_run_goes_on_when_its_socket_drops_and_ends_once() -> None:
    settings = make_settings(demo_chunks=60, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv, srv.client() as rest:
        async with ws_connect(srv, "drop") as asker:
            await asker.recv()
            await asker.send("chat", message="keep going")
            await asker.until("text")
        async with ws_connect(srv, "drop") as watcher:
            await watcher.recv()
            frames = await watcher.until("done")
            assert kinds(frames).count("done") == 1 and frames[-1]["data"]["status"] == "completed"
        messages = (await rest.get("/api/v1/sessions/drop/messages")).json()["messages"]
        assert [m["status"] for m in messages if m["role"] == "assistant"] == ["completed"]


async def test_a_ws_run_can_be_cancelled_over_rest_and_a_rest_run_over_the_socket() -> None:
    async with live_server(LONG) as srv, ws_connect(srv, "mix") as ws, srv.client() as rest:
        await ws.recv()
        await ws.send("chat", message="long")
        await ws.until("text")
        r = await rest.post("/api/v1/chat/mix/cancel")
        assert r.status_code == 200
        assert (await ws.until("done"))[-1]["data"]["status"] == "cancelled"

        chat = asyncio.create_task(rest.post("/api/v1/chat", json={"message": "long", "session_id": "mix"}))
        await ws.until("text")
        await ws.send("cancel")
        assert (await ws.until("done"))[-1]["data"]["status"] == "cancelled"
        assert (await chat).json()["status"] == "cancelled"


async def test_a_rest_approval_can_be_decided_over_the_socket_and_vice_versa() -> None:
    async with live_server() as srv, ws_connect(srv, "mixh") as ws, srv.client() as rest:
        await ws.recv()
        body = (await rest.post("/api/v1/chat", json={"message": "SELECT 1", "session_id": "mixh"})).json()
        assert body["status"] == "awaiting_approval"
        await ws.until("hitl")
        await ws.send("hitl_decision", decisions=[{"type": "approve"}])
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"

        await ws.send("chat", message="SELECT 2")
        hitl = (await ws.until("hitl"))[-1]["data"]
        r = await rest.post("/api/v1/chat/mixh/hitl", json={"interrupt_id": hitl["interrupt_id"],
                                                            "decisions": [{"type": "approve"}]})
        assert r.json()["status"] == "completed"
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"


async def _interrupted_run(srv: Any, session_id: str, keep: int) -> tuple[list[dict[str, Any]], int]:
    """Start a run on a socket, read `keep` frames after run_started, then drop the socket."""
    async with ws_connect(srv, session_id) as ws:
        await ws.recv()
        await ws.send("chat", message="stream")
        seen = await ws.until("run_started")
        for _ in range(keep):
            seen.append(await ws.recv())
    return seen, seen[-1]["seq"]


async def test_resume_by_url_returns_the_missing_events_exactly_once_in_order() -> None:
    settings = make_settings(demo_chunks=80, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv:
        seen, last = await _interrupted_run(srv, "res1", keep=10)
        async with ws_connect(srv, "res1", query=f"after_seq={last}") as ws:
            connected = await ws.recv()
            assert connected["data"]["recovered"] is True
            rest = await ws.until("done")
        assert rest[0]["seq"] == last + 1
        assert_contiguous(seen + rest)
        assert kinds(seen + rest).count("done") == 1



async def run_ended(client: httpx.AsyncClient, session_id: str) -> bool:
    return (await client.get(f"/api/v1/sessions/{session_id}")).json()["active_run_id"] is None

async def test_resume_by_frame_after_the_run_ended_returns_the_missing_events() -> None:
    settings = make_settings(demo_chunks=30, demo_chunk_delay_ms=2)
    async with live_server(settings) as srv, srv.client() as rest_client:
        seen, last = await _interrupted_run(srv, "res2", keep=5)
        await eventually(lambda: run_ended(rest_client, "res2"), what="the run's end")
        async with ws_connect(srv, "res2") as ws:
            await ws.recv()
            await ws.send("resume", after_seq=last)
            rest = await ws.until("done")
            assert (await ws.recv())["data"] == {"after_seq": last, "replayed": len(rest)}  # `resumed`
            await ws.send("resume", after_seq=last)  # everything was sent already: nothing again
            again = await ws.recv()
            assert again["event_type"] == "resumed" and again["data"]["replayed"] == 0 and "seq" not in again
            await ws.send("ping")
            assert (await ws.recv())["event_type"] == "pong"
        assert_contiguous(seen + rest)


async def test_resume_while_watching_live_sends_only_what_this_socket_has_not_had() -> None:
    settings = make_settings(demo_chunks=200, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv:
        seen, last = await _interrupted_run(srv, "res3", keep=3)
        async with ws_connect(srv, "res3") as ws:
            await ws.recv()
            replayed = [await ws.recv() for _ in range(3)]  # the active run from its run_started
            await ws.send("resume", after_seq=seen[0]["seq"] - 1)
            rest = await ws.until("done")
        all_seqs = [f["seq"] for f in replayed + rest if "seq" in f]
        assert len(all_seqs) == len(set(all_seqs))
        assert sorted(all_seqs) == list(range(seen[0]["seq"], seen[0]["seq"] + len(all_seqs)))


async def test_a_socket_that_joins_mid_run_and_resumes_gets_the_earlier_events_once_then_resumed() -> None:
    settings = make_settings(demo_chunks=200, demo_chunk_delay_ms=5)
    async with live_server(settings) as srv:
        async with ws_connect(srv, "res5") as first:
            await first.recv()
            await first.send("chat", message="one")
            earlier = await first.until("done")
        seen, _ = await _interrupted_run(srv, "res5", keep=3)  # a second run goes on without a socket
        async with ws_connect(srv, "res5") as ws:
            await ws.recv()
            joined = [await ws.recv() for _ in range(4)]  # the active run from its run_started
            await ws.send("resume", after_seq=earlier[0]["seq"] - 1)
            frames = await ws.until("resumed", timeout=20)
            if "done" not in kinds(frames):
                frames += await ws.until("done", timeout=20)
        resumed = next(f for f in frames if f["event_type"] == "resumed")
        assert joined[0]["seq"] == seen[0]["seq"] and "seq" not in resumed
        older = [f for f in frames if "seq" in f and f["seq"] < joined[0]["seq"]]
        assert older == earlier and resumed["data"]["replayed"] == len(earlier)
        all_seqs = [f["seq"] for f in joined + frames if "seq" in f]
        assert len(all_seqs) == len(set(all_seqs))  # none twice
        assert sorted(all_seqs) == list(range(earlier[0]["seq"], earlier[0]["seq"] + len(all_seqs)))


async def test_resume_reports_when_the_events_are_no_longer_held() -> None:
    settings = make_settings(demo_chunks=60, demo_chunk_delay_ms=1, replay_events=10)
    async with live_server(settings) as srv, srv.client() as rest_client:
        seen, _ = await _interrupted_run(srv, "res4", keep=1)
        await eventually(lambda: run_ended(rest_client, "res4"), what="the run's end")
        first = seen[0]["seq"]
        async with ws_connect(srv, "res4", query=f"after_seq={first}") as ws:
            assert (await ws.recv())["data"]["recovered"] is False
            await ws.send("resume", after_seq=first)
            frames = await ws.until("error")
            assert frames[-1]["data"]["error_code"] == "replay_unavailable"
            assert frames[-1]["data"]["recoverable"] is True
        async with ws_connect(srv, "res4", query="after_seq=999999999999999999") as ws:
            assert (await ws.recv())["data"]["recovered"] is False


async def test_clients_may_choose_ids_and_the_first_chat_creates_the_session() -> None:
    async with live_server() as srv, ws_connect(srv, "Fresh_ID-1") as ws, srv.client() as rest:
        await ws.recv()
        assert (await rest.get("/api/v1/sessions/Fresh_ID-1")).status_code == 404
        await ws.send("chat", message="please remember me")
        await ws.until("done")
        info = (await rest.get("/api/v1/sessions/Fresh_ID-1")).json()
        assert info["user_id"] == "alice" and info["title"] == "please remember me"



async def test_a_socket_whose_session_was_deleted_is_closed_with_4404_and_a_new_socket_creates_it_again() -> None:
    async with live_server() as srv, srv.client() as rest:
        async with ws_connect(srv, "again") as ws:
            await ws.recv()
            await ws.send("chat", message="first")
            await ws.until("done")
            assert (await rest.delete("/api/v1/sessions/again")).status_code == 204
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.until("never")
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
            assert ws.frames[-1]["data"]["error_code"] == "session_not_found"
        async with ws_connect(srv, "again") as ws:
            await ws.recv()
            await ws.send("chat", message="second")
            assert (await ws.until("done"))[-1]["data"]["status"] == "completed"
        messages = (await rest.get("/api/v1/sessions/again/messages")).json()["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "second"
