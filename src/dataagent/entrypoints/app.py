"""The ASGI application factory. `app` (module level) serves `uvicorn dataagent.entrypoints.app:app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from dataagent import __version__
from dataagent.adapters.http import (
    audit,
    auth,
    catalog,
    chat,
    deps,
    feedback,
    health,
    metrics,
    sessions,
    sse,
    verified,
    websocket,
    ws_paths,
)
from dataagent.adapters.http.errors import install_error_handlers
from dataagent.adapters.http.middleware import (
    RAW_SEND_KEY,
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    TracingMiddleware,
)
from dataagent.adapters.http.protocols import STATE_KEY, HttpLimits
from dataagent.adapters.http.webui import install_docs, install_webui
from dataagent.application.telemetry import NoTracing
from dataagent.entrypoints.container import Container
from dataagent.entrypoints.lifecycle import build_lifecycle
from dataagent.entrypoints.logs import configure_logging, install_redaction
from dataagent.entrypoints.settings import Settings, SettingsError, load_settings

log = logging.getLogger("dataagent")

API_PREFIX = "/api/v1"
GENERATED_PRINCIPAL = "default"
GC_GEN0_THRESHOLD = 10_000


def ensure_api_key(settings: Settings) -> Settings:
    """With no key configured and auth enabled, generate one, print it once, and enforce it."""
    if settings.api_keys or settings.auth_disabled:
        return settings
    key = secrets.token_urlsafe(32)
    print(f"Generated API key: {key}", file=sys.stdout, flush=True)
    return settings.model_copy(update={"api_keys": [f"{GENERATED_PRINCIPAL}:{key}"]})


class App(FastAPI):
    """FastAPI, keeping the server's own `send` in the scope (RAW_SEND_KEY) for the streaming hot paths.

    Taken here, outside all middleware (Starlette's error middleware included): a WebSocket sends its frames
    through it after the handshake, past Starlette's per-message state checks and exception wrapper; an event
    stream its chunks after the head (the middleware only reads a response's head and whether it started).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    """Build the app from `settings` (the environment if None); tests pass their own."""
    settings = ensure_api_key(settings or load_settings())
    container = container or Container(settings=settings)
    container.wire(modules=[health, chat, sessions, sse, catalog, audit, feedback, verified, auth, deps, metrics,
                            websocket.endpoint, ws_paths],
                   warn_unresolved=True)
    install_redaction()
    if settings.auth_disabled:
        log.warning("DATAAGENT_AUTH_DISABLED=true: every route is open and every caller is 'anonymous'")

    app = App(
        title="DataAgent Server", version=__version__, lifespan=_lifespan,
        description="REST and WebSocket API of the DataAgent data-analysis agent (see PROTOCOL.md).",
        docs_url=None, redoc_url=None,  # served offline by install_docs
    )
    app.state.container = container
    app.state.settings = settings
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(sse.router, prefix=API_PREFIX)  # before chat: /chat/stream is not a session's path
    app.include_router(chat.router, prefix=API_PREFIX)
    app.include_router(sessions.router, prefix=API_PREFIX)
    app.include_router(catalog.router, prefix=API_PREFIX)
    app.include_router(audit.router, prefix=API_PREFIX)
    app.include_router(feedback.router, prefix=API_PREFIX)
    app.include_router(verified.router, prefix=API_PREFIX)
    app.include_router(websocket.router)
    if settings.metrics:
        metrics.install_metrics(app, public=settings.metrics_public)
    install_docs(app)
    if settings.ui:
        install_webui(app, settings.auth_disabled)
    app.include_router(ws_paths.router)  # after the chat socket: what it does not match closes with 4400
    install_error_handlers(app, container.telemetry())
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_frame_bytes)
    app.add_middleware(
        CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"],
        expose_headers=["X-Request-ID", "Retry-After", "X-Session-ID", "RateLimit-Limit", "RateLimit-Remaining",
                        "RateLimit-Reset"],
        allow_credentials="*" not in settings.cors_origins,
    )
    tracing = container.tracing()
    if not isinstance(tracing, NoTracing):  # no middleware at all when nothing traces
        app.add_middleware(TracingMiddleware, tracing=tracing)
    app.add_middleware(RequestIdMiddleware)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    container: Container = app.state.container
    settings: Settings = app.state.settings
    async with build_lifecycle(container):
        tune_gc()
        install_redaction()  # again: uvicorn's logging set-up may have replaced the handlers since create_app
        log.info("DataAgent Server %s: store=%s broker=%s agent=%s", __version__, settings.session_store,
                 settings.broker, container.engine().name)
        restore_signals = _cancel_runs_on_signal(container)
        try:
            yield {STATE_KEY: http_limits(settings)}  # read by the bounded HTTP protocols (protocols.py)
        finally:
            restore_signals()
            for reporter in (container.telemetry(), container.tracing()):
                close = getattr(reporter, "close", None)
                if close is not None:
                    close()  # metrics: this worker leaves the live gauges; tracing: buffered spans exported


def http_limits(settings: Settings) -> HttpLimits:
    return HttpLimits(settings.header_timeout, settings.max_header_bytes, settings.http_connection_limit)


def tune_gc() -> None:
    """Fewer young-generation collections: a streaming server allocates a few objects per token, and the
    default threshold (700) made the collector cost 20% of the CPU at 1000 users (docs/PERFORMANCE.md).
    Objects alive after start-up (modules, the app) are frozen out of every later collection."""
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)
    gc.freeze()


def _cancel_runs_on_signal(container: Container) -> Callable[[], None]:
    """On SIGTERM/SIGINT, cancel and persist running answers first, then hand the signal to uvicorn.

    uvicorn closes sockets (1012) within its next 0.1 s tick after its handler runs; calling it only once the
    runs have ended lets their `done` reach the sockets and waiting REST chats return. A second signal goes
    straight to uvicorn. Returns an undo.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    originals: dict[int, Any] = {}

    def cancel_runs_then(previous: Any, signum: int) -> None:
        if pending:  # a second signal: do not wait any longer
            _call_handler(previous, signum)
            return
        task = loop.create_task(container.run_manager().shutdown(reason="shutdown"))
        pending.add(task)
        task.add_done_callback(lambda _: _call_handler(previous, signum))

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        originals[sig] = previous

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(cancel_runs_then, previous, signum)

        signal.signal(sig, handler)

    def restore() -> None:
        for sig, previous in originals.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, previous)

    return restore


def _call_handler(handler: Any, signum: int) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL and signum == signal.SIGINT:
        raise KeyboardInterrupt


def from_environment() -> FastAPI:
    """The app of `uvicorn dataagent.entrypoints.app:app` (and `dataagent_server.main:app`): the settings and
    the logging of `dataagent-server`; a bad setting stops the start-up with one line, as there."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"dataagent-server: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def __getattr__(name: str) -> Any:
    """Build the module-level `app` lazily, so importing this module reads no environment."""
    if name == "app":
        application = from_environment()
        globals()["app"] = application
        return application
    raise AttributeError(name)
