"""The services start in one order and stop in the reverse one; a failed start stops what had started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from dependency_injector import providers

from dataagent.domain.errors import BrokerUnavailableError
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.engines import build_engine
from dataagent.entrypoints.lifecycle import Lifecycle, Step, build_lifecycle
from tests.support.polling import eventually
from tests.support.servers import make_settings


def recorded(calls: list[str], name: str, fail: str | None = None, hang: str | None = None) -> Step:
    def action(what: str) -> Callable[[], Any]:
        async def run() -> None:
            calls.append(f"{name}.{what}")
            if what == fail:
                raise RuntimeError(f"{name} cannot {what}")
            if what == hang:
                await asyncio.Event().wait()
        return run

    return Step(name, action("start"), action("stop"), timeout_s=0.1)


async def test_steps_start_in_order_and_stop_in_reverse() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([recorded(calls, "a"), recorded(calls, "b"), recorded(calls, "c")])
    await lifecycle.start()
    await lifecycle.stop()
    assert calls == ["a.start", "b.start", "c.start", "c.stop", "b.stop", "a.stop"]


async def test_a_failed_start_stops_the_steps_before_it_in_reverse_and_raises() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([recorded(calls, "a"), recorded(calls, "b"), recorded(calls, "c", fail="start"),
                           recorded(calls, "d")])
    with pytest.raises(RuntimeError, match="c cannot start"):
        await lifecycle.start()
    assert calls == ["a.start", "b.start", "c.start", "b.stop", "a.stop"]


async def test_a_start_past_its_bound_fails_and_stops_the_steps_before_it() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([recorded(calls, "a"), recorded(calls, "b", hang="start")])
    with pytest.raises(TimeoutError):
        await lifecycle.start()
    assert calls == ["a.start", "b.start", "a.stop"]


async def test_a_stop_that_fails_or_hangs_does_not_keep_the_others_from_stopping() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([recorded(calls, "a"), recorded(calls, "b", fail="stop"), recorded(calls, "c", hang="stop")])
    await lifecycle.start()
    await lifecycle.stop()
    assert calls[3:] == ["c.stop", "b.stop", "a.stop"]


async def test_stopping_twice_stops_each_step_once() -> None:
    calls: list[str] = []
    lifecycle = Lifecycle([recorded(calls, "a")])
    async with lifecycle:
        pass
    await lifecycle.stop()
    assert calls == ["a.start", "a.stop"]


class Recording:
    """Wraps an adapter of a port and notes `<name>.<method>` of each call, in order."""

    def __init__(self, target: Any, name: str, calls: list[str], fail: str | None = None) -> None:
        self._target, self._name, self._calls, self._fail = target, name, calls, fail

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(f"{self._name}.{attr}")
            if attr == self._fail:
                raise BrokerUnavailableError("the broker is down")
            return value(*args, **kwargs)

        return call


def recording_container(calls: list[str], broker_fails: str | None = None, **settings: Any) -> Container:
    container = Container(settings=make_settings(**settings))
    repository, broker = container.repository(), container.broker()
    engine = build_engine(container.settings())
    container.repository.override(providers.Object(Recording(repository, "store", calls)))
    container.broker.override(providers.Object(Recording(broker, "broker", calls, fail=broker_fails)))
    container.engine.override(providers.Object(Recording(engine, "agent", calls)))
    return container


LIFECYCLE_CALLS = {"store.start", "broker.on_orphan", "broker.start", "broker.on_control", "store.list_active_runs",
                   "store.delete_idle_sessions", "agent.close", "broker.close", "store.close"}


async def test_the_services_start_store_broker_runs_recovery_sweepers_and_stop_in_reverse() -> None:
    calls: list[str] = []
    lifecycle = build_lifecycle(recording_container(calls, expiry_interval=0.01))
    await lifecycle.start()
    await eventually(lambda: "store.delete_idle_sessions" in calls, what="a sweep of idle sessions")
    await lifecycle.stop()
    seen = [c for c in calls if c in LIFECYCLE_CALLS]
    first_sweep, last_sweep = seen.index("store.delete_idle_sessions"), len(seen) - seen[::-1].index(
        "store.delete_idle_sessions")
    assert seen[:first_sweep] == [
        "store.start", "broker.on_orphan", "broker.start", "broker.on_control", "store.list_active_runs"]
    assert seen[last_sweep:] == ["agent.close", "broker.close", "store.close"]


async def test_a_broker_that_cannot_start_stops_the_store_and_no_run_manager_is_built() -> None:
    calls: list[str] = []
    lifecycle = build_lifecycle(recording_container(calls, broker_fails="start"))
    with pytest.raises(BrokerUnavailableError):
        await lifecycle.start()
    assert [c for c in calls if c in LIFECYCLE_CALLS] == [
        "store.start", "broker.on_orphan", "broker.start", "store.close"]
