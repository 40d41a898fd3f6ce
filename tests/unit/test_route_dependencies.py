"""No route dependency runs in a worker thread: FastAPI runs a sync dependency through the thread pool (a
thread hop per dependency per request). dependency_injector's own `Provide` marker is one; ours is awaited.
And what a route is given from the container is built once, not per request."""

import inspect
from collections.abc import Iterator
from typing import Any

from dependency_injector import providers
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from dataagent.adapters.http.injection import Provide
from dataagent.entrypoints.app import create_app
from dataagent.entrypoints.container import Container
from tests.support import make_settings


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _routes(routes: list[Any]) -> Iterator[APIRoute | APIWebSocketRoute]:
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI's include_router keeps the router
        if included is not None:
            yield from _routes(included.routes)


def _runs_in_a_thread(call: Any) -> bool:
    if inspect.isroutine(call):
        return not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
    dunder = getattr(call, "__call__", None)  # noqa: B004 - an instance: FastAPI looks at its __call__
    return not (inspect.iscoroutinefunction(dunder) or inspect.isasyncgenfunction(dunder))


def test_every_dependency_of_every_route_is_awaited_not_sent_to_the_thread_pool() -> None:
    app = create_app(make_settings(metrics=True, ui=True))
    routes = list(_routes(app.routes))
    assert len(routes) > 20
    threaded = {
        f"{route.path}: {getattr(dep.call, '__name__', repr(dep.call))}"
        for route in routes for dep in _dependants(route.dependant)
        if dep.call is not None and _runs_in_a_thread(dep.call)
    }
    assert threaded == set()


def test_every_service_a_route_is_given_is_a_singleton_not_rebuilt_per_request() -> None:
    app = create_app(make_settings(metrics=True, ui=True))
    names = {dep.call.provider for route in _routes(app.routes) for dep in _dependants(route.dependant)
             if isinstance(dep.call, Provide)}
    assert {"chat_service", "idempotent_chat", "session_watch", "telemetry"} <= names
    container = Container(settings=make_settings())
    assert {name for name in names if not isinstance(getattr(container, name), providers.Singleton)} == set()
