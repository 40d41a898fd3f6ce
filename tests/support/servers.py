"""A real uvicorn server on 127.0.0.1 inside the test's event loop, and the settings tests run it with."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from dependency_injector import providers
from fastapi import FastAPI

from dataagent.entrypoints.app import create_app
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.settings import Settings
from tests.support.polling import eventually

KEY_A = "key-alpha-0123456789"
KEY_B = "key-bravo-9876543210"


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: two named keys, a fast demo engine, nothing read from the environment."""
    values: dict[str, Any] = {
        "agent": "demo",  # not `auto`: an OPENAI_API_KEY in the environment must not reach a real LLM
        "api_keys": [f"alice:{KEY_A}", f"bob:{KEY_B}"],
        "demo_chunks": 5,
        "demo_chunk_delay_ms": 1,
        "host": "127.0.0.1",
        "port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class LiveServer:
    app: FastAPI
    base_url: str
    server: uvicorn.Server

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    @property
    def container(self) -> Any:
        return self.app.state.container

    def client(self, key: str | None = KEY_A, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)


@contextlib.asynccontextmanager
async def live_server(
    settings: Settings | None = None, engine: Any = None, overrides: dict[str, Any] | None = None,
    **uvicorn_options: Any,
) -> AsyncIterator[LiveServer]:
    """Run the real app under uvicorn on a free 127.0.0.1 port inside the test's event loop.

    `engine` replaces the configured agent engine, `overrides` other providers by name (through the container's
    override, no patching).
    """
    settings = settings or make_settings()
    container = Container(settings=settings)
    if engine is not None:
        container.engine.override(providers.Object(engine))
    for name, provided in (overrides or {}).items():
        getattr(container, name).override(providers.Object(provided))
    app = create_app(settings, container)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="on",
        ws_max_size=settings.max_frame_bytes, **uvicorn_options,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            task.result()
            raise RuntimeError("server did not start")
        return bool(server.started)

    await eventually(started, timeout=30, what="the server started")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app, f"http://127.0.0.1:{port}", server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
