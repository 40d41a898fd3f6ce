"""A subscription with a direct sink (the socket writing a frame in the publisher's step): every item reaches
the socket exactly once and in publish order, whether the sink takes it, declines it or is not asked."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from dataagent.application.streams import Item, Subscription


class Socket:
    """What a socket sent, in order: items taken directly and items its writer sent from batches."""

    def __init__(self, accepts: list[bool]) -> None:
        self.sent: list[Item] = []
        self.direct_calls = 0
        self._accepts = iter(accepts)

    def direct(self, item: Item) -> bool:
        self.direct_calls += 1
        if next(self._accepts, True):
            self.sent.append(item)
            return True
        return False


async def test_an_idle_reader_with_nothing_queued_gets_the_item_directly() -> None:
    socket = Socket([True])
    sub = Subscription([], True, 10)
    sub.direct = socket.direct
    reader = asyncio.create_task(sub.get_batch())
    await asyncio.sleep(0)  # the reader now waits
    sub.put("a")
    assert socket.sent == ["a"] and not reader.done()
    sub.put("b")  # the sink declines nothing here, but the reader still waits: directly again
    assert socket.sent == ["a", "b"]
    reader.cancel()


async def test_a_busy_reader_or_a_queue_means_the_item_is_queued_behind() -> None:
    socket = Socket([False, True])
    sub = Subscription([], True, 10)
    sub.direct = socket.direct
    sub.put("a")  # no reader waiting: queued, the sink is not asked
    assert socket.direct_calls == 0
    assert await sub.get_batch() == ["a"]
    reader = asyncio.create_task(sub.get_batch())
    await asyncio.sleep(0)  # kept: one loop pass, and the reader waits (no time passes)
    sub.put("b")  # the sink declines (say the socket is not writable): queued, the reader woken
    sub.put("c")  # something is queued now: behind it, without asking the sink
    assert socket.direct_calls == 1 and await reader == ["b", "c"] and socket.sent == []


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.sampled_from(["put", "read"]), max_size=60),
       accepts=st.lists(st.booleans(), max_size=60))
def test_every_item_reaches_the_socket_once_in_publish_order(steps: list[str], accepts: list[bool]) -> None:
    async def scenario() -> None:
        socket = Socket(accepts)
        sub = Subscription([], True, 1000)
        sub.direct = socket.direct

        async def writer() -> None:
            while True:
                socket.sent.extend(await sub.get_batch())

        task = asyncio.create_task(writer())
        published = []
        for n, step in enumerate(steps):
            if step == "put":
                published.append(f"e{n}")
                sub.put(f"e{n}")
            else:
                await asyncio.sleep(0)  # the writer runs (sends a batch, or goes back to waiting)
        for _ in range(3):
            await asyncio.sleep(0)  # kept: loop passes for the writer to finish (no time passes)
        assert socket.sent == published
        task.cancel()

    asyncio.run(scenario())
