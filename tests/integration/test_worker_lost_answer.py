"""kill -9 of a run's owner mid-answer: the answer the other process stores is exactly the text a watcher on that
process received (issue 16, item 7), every time, and within the `worker_lost` detection bound of test_scale_out.

Server B lives through the whole test and watches; each round starts a fresh owner A on the same MySQL database
and Redis prefix, runs answers there, kills it 0.3-0.9 s into them and waits for each `done` on B."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time

import pytest

from tests.integration.test_scale_out import (
    REDIS_HOST,
    REDIS_PORT,
    delete_keys,
    drop,
    history,
    new_prefix,
    new_sid,
    server_env,
    start_server,
    text_of,
)
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.services import require_service
from tests.support import ServerProcess, WsClient, wait_healthy, ws_connect

pytestmark = [pytest.mark.integration, pytest.mark.mysql, pytest.mark.redis]

ROUNDS, SESSIONS = 5, 4  # 20 answers cut by a kill -9: four at a time on each of five owners
LEASE_S = "1"  # the shortest DATAAGENT_RUN_LEASE: the owner's death is found within about a second
CHUNK_DELAY_MS = 20  # the demo answer: 1000 deltas, one every 20 ms
DETECTION_BOUND_S = 10  # kill -9 to `done` on the other process, as in test_scale_out


def texts(ws: WsClient) -> int:
    return sum(frame["event_type"] == "text" for frame in ws.frames)


async def until_texts(ws: WsClient, n: int, timeout: float = 10) -> None:
    """Poll until the watcher has received `n` text frames (its reader task fills `ws.frames`)."""
    async with asyncio.timeout(timeout):
        while texts(ws) < n:
            await asyncio.sleep(0.005)


async def watch_to_done(ws: WsClient) -> float:
    """Read the watcher's frames (into `ws.frames`) up to `done`; the monotonic time it came."""
    await ws.until("done", timeout=30)
    return time.monotonic()


async def one_round(b: ServerProcess, a: ServerProcess, rng: random.Random) -> list[tuple[float, str, str]]:
    """Answers in SESSIONS sessions on A, each watched from B, started one after another so that the kill -9 of
    A comes 0.3 s into the last and at most 0.9 s into the first (counted in deltas the watchers received);
    for each: (seconds from the kill to its `done`, the stored answer, the text its watcher received)."""
    async with contextlib.AsyncExitStack() as stack:
        pairs = []
        for _ in range(SESSIONS):
            sid = new_sid("lost")
            wb = await stack.enter_async_context(ws_connect(b, sid))
            wa = await stack.enter_async_context(ws_connect(a, sid))
            await wb.recv(), await wa.recv()
            pairs.append((sid, wb, wa))
        readers: list[asyncio.Task[float]] = []
        for i, (_, wb, wa) in enumerate(pairs):
            if i:  # 0-0.2 s of deltas after the previous one's start
                await until_texts(pairs[i - 1][1], rng.randint(1, 10))
            readers.append(asyncio.create_task(watch_to_done(wb)))
            await wa.send("chat", message="an answer whose process dies")
        await until_texts(pairs[-1][1], 300 // CHUNK_DELAY_MS)
        a.stop(signal.SIGKILL)
        killed = time.monotonic()
        results = []
        rb = await stack.enter_async_context(b.client())
        for (sid, wb, wa), reader in zip(pairs, readers, strict=True):
            elapsed = await reader - killed
            drop(wa)
            done = wb.frames[-1]["data"]
            assert wb.frames[-2]["data"]["error_code"] == "worker_lost", wb.frames[-2:]
            assert done["status"] == "failed" and done["reason"] == "worker_lost", done
            answers = [m for m in await history(rb, sid) if m["role"] == "assistant"]
            assert [m["message_id"] for m in answers] == [done["message_id"]]
            results.append((elapsed, answers[0]["content"], text_of(wb.frames)))
        return results


async def test_the_answer_stored_after_kill_9_of_its_owner_is_the_text_a_watcher_received() -> None:
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    require_service(MYSQL_HOST, MYSQL_PORT, "MariaDB")
    rng, prefix = random.Random(16), new_prefix()
    async with fresh_database("dataagent_lost") as database:
        env = server_env(database, REDIS_PORT, prefix, RUN_LEASE=LEASE_S, DEMO_CHUNKS="1000",
                         DEMO_CHUNK_DELAY_MS=str(CHUNK_DELAY_MS))
        b = start_server(env)
        owners: list[ServerProcess] = []
        try:
            wait_healthy(b)
            results = []
            for _ in range(ROUNDS):
                owners.append(start_server(env))
                wait_healthy(owners[-1])
                results += await one_round(b, owners[-1], rng)
        finally:
            for server in owners:
                server.stop(signal.SIGKILL)
            b.stop()
            delete_keys(prefix)
    assert len(results) == ROUNDS * SESSIONS
    mismatches = [(stored, received) for _, stored, received in results if stored != received]
    assert not mismatches, f"{len(mismatches)} of {len(results)} stored answers differ: {mismatches[:3]}"
    assert all(received for _, _, received in results)
    assert max(elapsed for elapsed, _, _ in results) < DETECTION_BOUND_S
