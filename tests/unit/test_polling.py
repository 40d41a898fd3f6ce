"""eventually(): polls a plain or async condition until it holds, and says what did not happen in time."""

from __future__ import annotations

import pytest

from tests.support.polling import eventually


async def test_eventually_returns_the_first_truthy_value_of_a_plain_condition() -> None:
    values = iter([0, None, "", "ready"])
    assert await eventually(lambda: next(values), timeout=1, interval=0) == "ready"


async def test_eventually_awaits_an_async_condition() -> None:
    calls: list[int] = []

    async def third_call() -> bool:
        calls.append(1)
        return len(calls) == 3

    assert await eventually(third_call, timeout=1, interval=0) is True
    assert len(calls) == 3


async def test_eventually_fails_naming_what_did_not_happen_in_time() -> None:
    with pytest.raises(AssertionError, match="not within 0.05 s: the sky to fall"):
        await eventually(lambda: False, timeout=0.05, what="the sky to fall")
