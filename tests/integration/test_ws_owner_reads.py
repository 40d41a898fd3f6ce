"""When a socket reads its session's owner again (PROTOCOL.md: at each run's start): for a run it asked for
itself it does not (the ask read the owner, and a run id is never reused); for anyone else's run it does.
Counted with the store's own call metric on a real server."""

from __future__ import annotations

import pytest

from tests.integration.test_metrics import scrape, value
from tests.support import live_server, make_settings, ws_connect

pytestmark = pytest.mark.integration

READS = "dataagent_store_call_duration_seconds_count"


async def owner_reads(c: object) -> float:
    return value(await scrape(c), READS, operation="get_session")  # type: ignore[arg-type]


async def test_the_asker_reads_the_owner_once_at_connect_and_a_watcher_again_at_each_run_start() -> None:
    async with live_server(make_settings(metrics=True)) as srv, srv.client() as c:
        async with ws_connect(srv, "reads") as asker:
            await asker.recv()  # connected: the owner read at connect
            at_connect = await owner_reads(c)
            for n in range(3):
                await asker.send("chat", message=f"question {n}")
                assert (await asker.until("done"))[-1]["data"]["status"] == "completed"
            assert await owner_reads(c) == at_connect  # three runs it asked for: no further read
            async with ws_connect(srv, "reads") as watcher:
                await watcher.recv()
                before = await owner_reads(c)
                await asker.send("chat", message="one more")
                await asker.until("done")
                await watcher.until("done")
                assert await owner_reads(c) == before + 1  # the watcher's own check at run_started
