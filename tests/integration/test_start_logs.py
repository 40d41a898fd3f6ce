"""Every start form — `dataagent-server`, `dataagent-server --workers 2` and `uvicorn dataagent_server.main:app` —
prints the start-up lines (store, broker, engine), one access line per REST request and per WebSocket with the
`?api_key=` masked, no traceback, and with DATAAGENT_LOG_FORMAT=json one JSON object a line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.test_cli import child_env, running, uvicorn_command
from tests.integration.test_scale_out import delete_keys, new_prefix
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, fresh_database
from tests.services import REDIS_HOST, REDIS_PORT, redis_url, require_service
from tests.support import ServerProcess, cli_command, eventually, free_port, ws_connect_to

pytestmark = pytest.mark.integration

SECRET = "LOGSECRET4711"
WRONG = "LOGWRONG0815"
FIELDS = {"time", "level", "logger", "message", "request_id", "session_id", "run_id", "principal"}


def cli_form(port: int) -> list[str]:
    return cli_command() + ["--host", "127.0.0.1", "--port", str(port)]


def workers_form(port: int) -> list[str]:
    return cli_form(port) + ["--workers", "2"]


FORMS: dict[str, tuple[Callable[[int], list[str]], int]] = {
    "dataagent-server": (cli_form, 1),
    "uvicorn dataagent_server.main:app": (uvicorn_command, 1),
    "dataagent-server --workers 2": (workers_form, 2),
}


@contextlib.asynccontextmanager
async def form_env(form: str, log_format: str) -> AsyncIterator[dict[str, str]]:
    """The environment of a form: memory and local for one process, MariaDB and Redis for two workers."""
    env = child_env(API_KEYS=f"demo:{SECRET}", LOG_FORMAT=log_format, DEMO_CHUNKS="3", DEMO_CHUNK_DELAY_MS="1")
    if FORMS[form][1] == 1:
        yield env
        return
    require_service(REDIS_HOST, REDIS_PORT, "Redis")
    prefix = new_prefix()
    async with fresh_database("dataagent_logs") as database:
        try:
            yield env | child_env(SESSION_STORE="mysql", MYSQL_HOST=MYSQL_HOST, MYSQL_PORT=str(MYSQL_PORT),
                                  MYSQL_DATABASE=database, BROKER="redis", REDIS_URL=redis_url(), REDIS_PREFIX=prefix)
        finally:
            delete_keys(prefix)


def lines_with(server: ServerProcess, marker: str) -> list[str]:
    return [line for line in server.text().splitlines() if marker in line]


async def wait_line(server: ServerProcess, marker: str) -> str:
    await eventually(lambda: lines_with(server, marker), 10, interval=0.05, what=f"a log line with {marker}")
    return lines_with(server, marker)[0]


async def exercise(server: ServerProcess, workers: int, store: str) -> tuple[str, str, str]:
    """Start-up lines, a REST request and a WebSocket, each with the key in the query; their access lines."""
    startup = f"store={store} broker={'redis' if workers == 2 else 'local'} agent=demo"
    await eventually(lambda: len(lines_with(server, startup)) == workers, 30, interval=0.1,
                     what=f"{workers} start-up lines")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
        answered = await c.get("/api/v1/sessions/logged/stream", params={"api_key": SECRET, "probe": "rest1"})
        refused = await c.get("/api/v1/sessions", params={"api_key": WRONG, "probe": "rest2"})
    assert (answered.status_code, refused.status_code) == (404, 401)
    async with ws_connect_to(server.base_url, "logged", SECRET, "probe=ws1") as ws:
        assert (await ws.recv())["event_type"] == "connected"
        await ws.send("chat", message="hello")
        assert (await ws.until("done"))[-1]["data"]["status"] == "completed"
    rest = await wait_line(server, "probe=rest1")
    await wait_line(server, "probe=rest2")
    socket = await wait_line(server, "probe=ws1")
    return rest, socket, answered.headers["x-request-id"]


def assert_clean(output: str, markers: tuple[str, ...]) -> None:
    assert SECRET not in output and WRONG not in output, output
    assert "Traceback" not in output and "Logging error" not in output, output
    for marker in markers:
        assert sum(marker in line for line in output.splitlines()) == 1, (marker, output)


@pytest.mark.parametrize("form", list(FORMS))
async def test_each_start_form_logs_start_up_and_one_masked_access_line_per_request(form: str) -> None:
    command, workers = FORMS[form]
    async with form_env(form, "text") as env:
        port = free_port()
        with running(command(port), env, port) as server:
            rest, socket, _ = await exercise(server, workers, "mysql" if workers > 1 else "memory")
        output = server.text()
    assert "api_key=***" in rest and '"GET /api/v1/sessions/logged/stream?' in rest and " 404" in rest, rest
    assert "api_key=***" in socket and "WebSocket /ws/chat/logged?" in socket, socket
    assert " INFO uvicorn.access: " in rest  # the readable format: time, level, logger, message
    assert_clean(output, ("probe=rest1", "probe=rest2", "probe=ws1"))


@pytest.mark.parametrize("form", list(FORMS))
async def test_json_format_is_one_object_a_line_in_each_start_form(form: str) -> None:
    command, workers = FORMS[form]
    async with form_env(form, "json") as env:
        port = free_port()
        with running(command(port), env, port) as server:
            rest, socket, request_id = await exercise(server, workers, "mysql" if workers > 1 else "memory")
        output = server.text()
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]  # every line parses
    assert entries and all(isinstance(e, dict) and FIELDS <= e.keys() for e in entries), output
    access = json.loads(rest)
    assert access["logger"] == "uvicorn.access" and access["level"] == "INFO"
    assert "api_key=***" in access["message"]
    assert (access["request_id"], access["session_id"], access["principal"]) == (request_id, "logged", "demo")
    assert "api_key=***" in json.loads(socket)["message"]
    assert_clean(output, ("probe=rest1", "probe=rest2", "probe=ws1"))


async def test_uvicorns_log_config_is_kept_and_still_masks_the_key(tmp_path: Path) -> None:
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"mine": {"format": "MINE %(levelname)s %(name)s %(message)s"}},
        "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "mine"}},
        "root": {"level": "INFO", "handlers": ["h"]},
    }))
    port = free_port()
    async with form_env("uvicorn dataagent_server.main:app", "json") as env:
        with running(uvicorn_command(port, "--log-config", str(config)), env, port) as server:
            rest, _, _ = await exercise(server, 1, "memory")
        output = server.text()
    assert rest.startswith("MINE INFO uvicorn.access ") and "api_key=***" in rest, rest
    assert all(line.startswith("MINE ") for line in output.splitlines() if line.strip()), output
    assert_clean(output, ("probe=rest1", "probe=rest2", "probe=ws1"))
