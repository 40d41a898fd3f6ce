"""stop_tasks: the one way background loops are stopped."""

from __future__ import annotations

import asyncio

import pytest

from dataagent.application.tasks import stop_tasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def test_every_task_is_cancelled_and_awaited_and_none_is_skipped() -> None:
    tasks = [asyncio.create_task(_forever()) for _ in range(3)]
    await stop_tasks(tasks[0], None, *tasks[1:])
    assert all(task.cancelled() for task in tasks)


async def test_an_error_a_task_ended_with_is_raised_after_all_have_stopped() -> None:
    async def fails() -> None:
        raise RuntimeError("the loop broke")

    broken, other = asyncio.create_task(fails()), asyncio.create_task(_forever())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="the loop broke"):
        await stop_tasks(broken, other)
    assert other.cancelled()


async def test_a_cancel_of_the_caller_is_not_swallowed() -> None:
    async def stubborn() -> None:  # takes a while to end once cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)
            raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(stop_tasks(task))
    await asyncio.sleep(0.01)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
