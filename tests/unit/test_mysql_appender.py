"""The group commit's queueing (adapters/mysql/appends.py), with its database write replaced by a gate the
test opens: which appends share a batch, how many batches run at once, and that none is ever left behind.
(What a batch does in MariaDB is tested against the real server in tests/integration/test_mysql_appends.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from dataagent.adapters.mysql import appends
from dataagent.adapters.mysql.appends import MAX_BATCH, MAX_IN_FLIGHT, Appender, _Append
from dataagent.domain.models import Message
from tests.contract.helpers import new_message


class GatedAppender(Appender):
    """Batches wait at `gate`; each is recorded; messages get their index in the batch as position."""

    def __init__(self) -> None:
        super().__init__(engine=None)  # type: ignore[arg-type]  # never reached: _write is replaced
        self.gate = asyncio.Event()
        self.batches: list[list[str]] = []
        self.at_once = self.most_at_once = 0

    async def _write(self, batch: list[_Append]) -> list[Message | Exception]:
        self.at_once += 1
        self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            await self.gate.wait()
        finally:
            self.at_once -= 1
        self.batches.append([item.message.message_id for item in batch])
        return [replace(item.message, position=n) for n, item in enumerate(batch)]


def message(n: int) -> Message:
    return new_message("s1", f"m{n}")


async def test_appends_waiting_together_share_batches_of_at_most_max_batch() -> None:
    appender = GatedAppender()
    calls = [asyncio.create_task(appender.append(message(n), None, 100)) for n in range(300)]
    while appender.at_once < MAX_IN_FLIGHT:  # the writers took their batches and wait at the gate
        await asyncio.sleep(0)  # polls loop pass by loop pass
    appender.gate.set()
    await asyncio.gather(*calls)
    sizes = [len(b) for b in appender.batches]
    assert sum(sizes) == 300 and max(sizes) == MAX_BATCH and len(sizes) == 5
    assert sorted(m for b in appender.batches for m in b) == sorted(f"m{n}" for n in range(300))
    assert appender.batches[0] == [f"m{n}" for n in range(MAX_BATCH)]  # taken in arrival order
    assert appender.most_at_once == MAX_IN_FLIGHT


async def test_a_batch_holds_about_max_batch_bytes_and_a_larger_message_goes_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(appends, "MAX_BATCH_BYTES", 1000)
    appender = GatedAppender()
    sizes = [400, 400, 400, 5000, 100]
    calls = [asyncio.create_task(appender.append(message(n), None, size)) for n, size in enumerate(sizes)]
    await asyncio.sleep(0)  # kept: one loop pass, and every append has joined the queue
    appender.gate.set()
    await asyncio.gather(*calls)
    assert sorted(appender.batches) == [["m0", "m1"], ["m2"], ["m3"], ["m4"]]


async def test_an_append_arriving_as_every_writer_finishes_is_not_left_behind() -> None:
    """All writers see an empty queue and end in one loop pass; an append made in that same pass (before the
    finished tasks are discarded) must still start a writer, or it would wait forever."""
    appender = GatedAppender()
    first = [asyncio.create_task(appender.append(message(n), None, 100))
             for n in range(MAX_IN_FLIGHT * MAX_BATCH)]
    late: list[Any] = []

    async def append_when_the_gate_opens() -> None:
        # woken in the same pass as the writers, after them: each has found the queue empty and ended, and
        # their tasks are done but not yet discarded (that is a callback of the next pass)
        await appender.gate.wait()
        late.append(await appender.append(message(9999), None, 100))  # awaited inline: in this very pass

    while appender.at_once < MAX_IN_FLIGHT:  # every writer took a full batch and waits at the gate
        await asyncio.sleep(0)  # polls loop pass by loop pass
    racer = asyncio.create_task(append_when_the_gate_opens())
    await asyncio.sleep(0)  # kept: one loop pass, and the racer waits at the gate
    appender.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, racer), 5)  # stranded, it would wait forever
    assert [m.message_id for m in late] == ["m9999"]
