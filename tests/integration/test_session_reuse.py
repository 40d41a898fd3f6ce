"""A deleted or expired session takes its sockets, its replay buffer and its channel with it (issue 17, item 1).

Alice owns `reuse-*`, then it ends (REST DELETE, or idle expiry); Bob takes the same id. Alice's sockets close
with 4404 and get nothing of Bob's; a frame from a stale socket never lands in Bob's history; Bob stepping
`after_seq` back gets none of Alice's events, and his seqs lie above all of hers. On both stores, and with two
server processes sharing MariaDB and Redis (the socket on one, the delete on the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets

from dataagent.domain.models import Session
from tests.integration.test_scale_out import delete_keys, new_prefix, server_env, start_server
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, create_database, drop_database, fresh_database
from tests.services import REDIS_HOST, REDIS_PORT, require_service
from tests.support import KEY_A, KEY_B, ServerProcess, WsClient, live_server, make_settings, wait_healthy, ws_connect
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

ENDS = ["delete", "expire"]
TIMEOUT_S = 2.0  # the idle timeout of the expiry variants (the sweep runs every 0.1 s)


@dataclass
class Server:
    """Either an in-process server or two subprocesses: `ws` takes sockets, `rest` takes the REST calls."""

    ws: Any
    rest: Any
    repository: Any = None  # the store of an in-process server (to play a process that missed the news)


@contextlib.asynccontextmanager
async def server(store: str, end: str) -> AsyncIterator[Server]:
    overrides: dict[str, Any] = {"demo_chunks": 8, "demo_chunk_delay_ms": 1}
    if end == "expire":
        overrides |= {"session_timeout": TIMEOUT_S, "expiry_interval": 0.1}
    if store == "memory":
        async with live_server(make_settings(**overrides)) as srv:
            yield Server(srv, srv, srv.container.repository())
        return
    async with fresh_database("dataagent_reuse") as database:
        overrides |= {"session_store": "mysql", "mysql_host": MYSQL_HOST, "mysql_port": MYSQL_PORT,
                      "mysql_database": database}
        async with live_server(make_settings(**overrides)) as srv:
            yield Server(srv, srv, srv.container.repository())


def new_sid() -> str:
    return f"reuse-{secrets.token_hex(4)}"


async def end_session(alice: httpx.AsyncClient, sid: str, end: str) -> None:
    """Delete the session over REST, or wait until the expiry sweep has removed it."""
    if end == "delete":
        assert (await alice.delete(f"/api/v1/sessions/{sid}")).status_code == 204
        return

    async def expired() -> bool:
        return (await alice.get(f"/api/v1/sessions/{sid}")).status_code == 404

    await eventually(expired, TIMEOUT_S + 5, interval=0.05, what="the session's expiry")


async def closed_with(ws: WsClient, timeout: float = 5.0) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the server closes the socket: (its close code, the frames before the close)."""
    frames: list[dict[str, Any]] = []
    try:
        while True:
            frames.append(await ws.recv(timeout))
    except websockets.ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames
    except TimeoutError:
        return None, frames


def assert_gone(code: int | None, frames: list[dict[str, Any]]) -> None:
    """The socket got `session_not_found` (not recoverable) as its last frame and close code 4404."""
    assert code == 4404, (code, frames)
    assert frames and frames[-1]["event_type"] == "error", frames
    assert frames[-1]["data"]["error_code"] == "session_not_found" and frames[-1]["data"]["recoverable"] is False


async def history(c: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    r = await c.get(f"/api/v1/sessions/{sid}/messages", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def bob_chats(bob: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    r = await bob.post("/api/v1/chat", json={"message": "bob's own question", "session_id": sid})
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert body["status"] == "completed"
    return body


# -- (a) live: the old owner's sockets close, and see nothing of the new owner ---------------------------------


async def scenario_sockets_close(srv: Server, end: str) -> None:
    sid = new_sid()
    async with srv.rest.client(KEY_A) as alice, srv.rest.client(KEY_B) as bob:
        assert (await alice.post("/api/v1/chat", json={"message": "alice's question", "session_id": sid})
                ).status_code == 200
        async with ws_connect(srv.ws, sid, KEY_A) as wa:
            assert (await wa.recv())["event_type"] == "connected"
            await end_session(alice, sid, end)
            code, frames = await closed_with(wa)
            assert_gone(code, frames)
            body = await bob_chats(bob, sid)
            with contextlib.suppress(websockets.ConnectionClosed):  # closed already: nothing can be sent
                await wa.send("chat", message="alice's stale question")
            assert not [f for f in wa.frames if f.get("run_id") == body["run_id"]], wa.frames
        await asyncio.sleep(0.2)  # kept: an absence cannot be polled; a stale chat taken would be stored by now
        contents = [m["content"] for m in await history(bob, sid)]
        assert contents == ["bob's own question", body["content"]]


@pytest.mark.parametrize("end", ENDS)
async def test_an_ended_session_closes_its_sockets_with_4404_on_the_memory_store(end: str) -> None:
    async with server("memory", end) as srv:
        await scenario_sockets_close(srv, end)


@pytest.mark.mysql
@pytest.mark.parametrize("end", ENDS)
async def test_an_ended_session_closes_its_sockets_with_4404_on_the_mysql_store(end: str) -> None:
    async with server("mysql", end) as srv:
        await scenario_sockets_close(srv, end)


# -- (b) replay: the new owner steps after_seq back and finds none of the old owner's events --------------------


async def scenario_no_replay(srv: Server, end: str) -> None:
    sid = new_sid()
    async with srv.rest.client(KEY_A) as alice, srv.rest.client(KEY_B) as bob:
        async with ws_connect(srv.ws, sid, KEY_A) as wa:
            await wa.recv()
            await wa.send("chat", message="alice's secret question")
            alice_frames = await wa.until("done")
        alice_seqs = [f["seq"] for f in alice_frames]
        alice_run = alice_frames[0]["data"]["run_id"]
        await end_session(alice, sid, end)
        body = await bob_chats(bob, sid)
        async with ws_connect(srv.ws, sid, KEY_B, query=f"after_seq={alice_seqs[0] - 1}") as wb:
            connected = await wb.recv()
            assert connected["event_type"] == "connected"
            assert connected["data"]["last_seq"] > max(alice_seqs)
            for after in (alice_seqs[0] - 1, alice_seqs[len(alice_seqs) // 2], alice_seqs[-1],
                          connected["data"]["last_seq"] - 3):
                await wb.send("resume", after_seq=after)
            await wb.send("ping")
            frames = await wb.until("pong")
        leaked = [f for f in frames if f.get("run_id") == alice_run or "secret" in str(f)]
        assert not leaked, leaked
        assert "secret" not in str(await history(bob, sid))
        assert connected["data"]["recovered"] is False  # honest: what came after that seq is not held
        assert min(e["seq"] for e in body["events"]) > max(alice_seqs) + 1  # a gap: no old seq is a new one's key


@pytest.mark.parametrize("end", ENDS)
async def test_a_reused_id_replays_none_of_the_old_owners_events_on_the_memory_store(end: str) -> None:
    async with server("memory", end) as srv:
        await scenario_no_replay(srv, end)


@pytest.mark.mysql
@pytest.mark.parametrize("end", ENDS)
async def test_a_reused_id_replays_none_of_the_old_owners_events_on_the_mysql_store(end: str) -> None:
    async with server("mysql", end) as srv:
        await scenario_no_replay(srv, end)


# -- a process that missed the news: ownership is read on every frame and at every run's start ------------------


STALE_FRAMES = {
    "chat": {"message": "alice's stale question"},
    "cancel": {},
    "hitl_decision": {"interrupt_id": "int_x", "decisions": [{"type": "approve"}]},
    "resume": {"after_seq": 0},
}


@pytest.mark.parametrize("frame", list(STALE_FRAMES))
@pytest.mark.parametrize("store", ["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
async def test_a_stale_socket_never_acts_in_the_new_owners_session(store: str, frame: str) -> None:
    async with server(store, "delete") as srv, srv.rest.client(KEY_B) as bob, srv.rest.client(KEY_A) as alice:
        sid = new_sid()
        assert (await alice.post("/api/v1/chat", json={"message": "hi", "session_id": sid})).status_code == 200
        async with ws_connect(srv.ws, sid, KEY_A) as wa:
            await wa.recv()
            # the session goes behind the server's back (as on a process that missed the delete), and Bob
            # takes the id with no run yet: Alice's socket is still open
            assert await srv.repository.delete_session(sid)
            now = datetime.now(UTC)
            await srv.repository.get_or_create_session(Session(sid, "bob", "bob's", now, now))
            await wa.send(frame, **STALE_FRAMES[frame])
            code, frames = await closed_with(wa)
            assert_gone(code, frames)
        assert await history(bob, sid) == []


@pytest.mark.parametrize("store", ["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
async def test_a_stale_socket_gets_nothing_of_the_new_owners_answer(store: str) -> None:
    async with server(store, "delete") as srv, srv.rest.client(KEY_B) as bob, srv.rest.client(KEY_A) as alice:
        sid = new_sid()
        assert (await alice.post("/api/v1/chat", json={"message": "hi", "session_id": sid})).status_code == 200
        async with ws_connect(srv.ws, sid, KEY_A) as wa:
            await wa.recv()
            assert await srv.repository.delete_session(sid)  # behind the server's back: no notice
            await bob_chats(bob, sid)
            code, frames = await closed_with(wa)
            assert_gone(code, frames)
            assert [f["event_type"] for f in frames] == ["error"], frames


# -- (e) two processes on MariaDB + Redis: the socket on one, the delete (or the expiry) on the other ------------


@dataclass
class Pair:
    a: ServerProcess
    b: ServerProcess


@pytest.fixture(scope="module", params=ENDS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Pair, str]]:
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    end = str(request.param)
    prefix = new_prefix()
    database = asyncio.run(create_database("dataagent_reuse2"))
    extra = {"DEMO_CHUNKS": "8", "DEMO_CHUNK_DELAY_MS": "1"}
    if end == "expire":
        extra |= {"SESSION_TIMEOUT": str(TIMEOUT_S), "EXPIRY_INTERVAL": "0.1"}
    env = server_env(database, REDIS_PORT, prefix, **extra)
    servers = [start_server(env), start_server(env)]
    try:
        for s in servers:
            wait_healthy(s)
        yield Pair(*servers), end
    finally:
        for s in servers:
            s.stop()
        asyncio.run(drop_database(database))
        delete_keys(prefix)


@pytest.mark.mysql
@pytest.mark.redis
async def test_two_processes_the_socket_on_one_closes_when_the_session_ends_on_the_other(
    pair: tuple[Pair, str],
) -> None:
    servers, end = pair
    await scenario_sockets_close(Server(servers.a, servers.b), end)


@pytest.mark.mysql
@pytest.mark.redis
async def test_two_processes_a_reused_id_replays_none_of_the_old_owners_events(pair: tuple[Pair, str]) -> None:
    servers, end = pair
    await scenario_no_replay(Server(servers.a, servers.b), end)
