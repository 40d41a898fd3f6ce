"""`dataagent-server`: run the API with uvicorn. Flags override DATAAGENT_* variables."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

import uvicorn
from pydantic import SecretStr

from dataagent import __version__
from dataagent.entrypoints.logs import configure_logging, logging_config
from dataagent.entrypoints.settings import ENV_PREFIX, Settings, SettingsError, load_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus-client in each worker (its multiprocess mode)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dataagent-server", description="Run DataAgent Server.", epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="listen address (DATAAGENT_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (DATAAGENT_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (DATAAGENT_WORKERS, default 1)")
    parser.add_argument("--log-level", help="critical|error|warning|info|debug|trace (DATAAGENT_LOG_LEVEL)")
    parser.add_argument("--version", action="version", version=f"dataagent-server {__version__}")
    return parser.parse_args(argv)


def environment_help() -> str:
    """Every DATAAGENT_* variable with its default, read from Settings (so the list cannot drift)."""
    lines = ["Settings are environment variables (the README's settings table says what each does);",
             f"flags override them. The {ENV_PREFIX}* variables and their defaults:"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        if isinstance(default, list):
            default = ",".join(default)
        shown = "-" if default in (None, "") else str(default).lower() if isinstance(default, bool) else default
        lines.append(f"  {(ENV_PREFIX + name).upper():<34} {shown}")
    return "\n".join(lines)


def multi_worker_problem(settings: Settings) -> str | None:
    """Why these settings cannot run several workers, or None if they can."""
    if settings.workers == 1:
        return None
    reasons = []
    if settings.session_store == "memory":
        reasons.append("the memory store keeps sessions inside one process (use DATAAGENT_SESSION_STORE=mysql)")
    if settings.broker == "local":
        reasons.append("the local broker keeps runs inside one process (use DATAAGENT_BROKER=redis)")
    if not reasons:
        return None
    return (f"DATAAGENT_WORKERS={settings.workers} cannot run: " + "; ".join(reasons)
            + ". Each worker would hold its own runs and sessions and lose conversations and cancels.")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides: dict[str, Any] = {
        k: v for k, v in {"host": args.host, "port": args.port, "workers": args.workers,
                          "log_level": args.log_level}.items() if v is not None
    }
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"dataagent-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    problem = multi_worker_problem(settings)
    if problem:
        print(f"dataagent-server: {problem}", file=sys.stderr)
        raise SystemExit(2)
    from dataagent.entrypoints.engines import EngineLoadError, check_engine_settings

    try:
        check_engine_settings(settings)
    except EngineLoadError as exc:
        print(f"dataagent-server: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    _check_store(settings)
    from dataagent.entrypoints.app import create_app, ensure_api_key

    settings = ensure_api_key(settings)
    common: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "log_level": settings.log_level,
        "access_log": settings.access_log, "proxy_headers": False, "ws_max_size": settings.max_frame_bytes,
        "log_config": logging_config(settings.log_level, settings.log_format, settings.access_log),
        "ws_ping_interval": settings.ws_ping_interval, "ws_ping_timeout": settings.ws_ping_timeout,
        "ws_per_message_deflate": settings.ws_compression == "deflate", "backlog": 4096,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        # bounded request heads (time and bytes) and connections: adapters/http/protocols.py
        "http": "dataagent.adapters.http.protocols:BoundedHttpProtocol",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_timeout, "limit_concurrency": settings.http_connection_limit,
    }
    # uvicorn re-raises the SIGTERM it handled once it has shut down; exit 0 then, as after any clean stop
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    _export(settings, overrides)  # every worker reads the same settings, and the one generated key
    if settings.metrics:
        prepare_metrics_dir()
    uvicorn.run("dataagent.entrypoints.app:create_app", factory=True, workers=settings.workers, **common)


def _check_store(settings: Settings) -> None:
    """Fail fast, in one line, when the configured store or broker cannot be used (before any worker starts)."""
    from dataagent.domain.errors import BrokerUnavailableError, StoreUnavailableError
    from dataagent.entrypoints.container import check_broker, check_store

    try:
        asyncio.run(check_store(settings))
        asyncio.run(check_broker(settings))
    except (StoreUnavailableError, BrokerUnavailableError) as exc:
        print(f"dataagent-server: {exc.message}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR for the workers' metric files, fresh for this start: the one set (its metric
    files removed) or a temporary directory removed at exit. A scrape of any worker then adds them all."""
    directory = os.environ.get(MULTIPROC_ENV, "").strip()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))
    else:
        directory = tempfile.mkdtemp(prefix="dataagent-metrics-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = directory
    return directory


def _export(settings: Settings, overrides: dict[str, Any]) -> None:
    for name, value in overrides.items():
        os.environ[ENV_PREFIX + name.upper()] = str(value)
    os.environ[ENV_PREFIX + "API_KEYS"] = ",".join(settings.api_keys)


if __name__ == "__main__":
    main()
