"""The real command lines: `dataagent-server` (the CLI module) and the seed's `uvicorn dataagent_server.main:app`."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.exceptions
from websockets.sync.client import connect

import dataagent
from tests.support import KEY_A, ServerProcess, cli_command, free_port, spawn, wait_healthy

pytestmark = pytest.mark.integration

# The child must import this worktree's code, whatever the venv has installed.
SRC = Path(dataagent.__file__).resolve().parents[1]
PYTHONPATH = f"{SRC}:{SRC.parent}"
SECRET = "SECRETVALUE123"


def child_env(**variables: str) -> dict[str, str]:
    return {"PYTHONPATH": PYTHONPATH} | {f"DATAAGENT_{k}": v for k, v in variables.items()}


def uvicorn_command(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "dataagent_server.main:app", "--host", "127.0.0.1", "--port", str(port),
            *extra]


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], port: int) -> Iterator[ServerProcess]:
    """`spawn`, and whatever happens: stop the server, read its output to the end and close the pipe."""
    server = spawn(args, env, port)
    try:
        yield server
    finally:
        server.stop()
        finish(server)


def finish(server: ServerProcess) -> None:
    """Wait for the output pump (a daemon thread of `spawn`) to reach the end of the pipe, then close it."""
    deadline = time.monotonic() + 5
    for thread in threading.enumerate():
        if thread.name.endswith("(pump)"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if server.proc.stdout is not None and not any(t.name.endswith("(pump)") for t in threading.enumerate()):
        server.proc.stdout.close()


def exit_code(server: ServerProcess, timeout: float = 15) -> int:
    return server.proc.wait(timeout)


def wait_output(server: ServerProcess, pattern: str, timeout: float = 5) -> re.Match[str]:
    """The first match of `pattern` in the output (the pump thread may lag behind the process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, server.text(), re.MULTILINE)
        if found:
            return found
        time.sleep(0.05)  # the poll's interval
    raise AssertionError(f"{pattern!r} not in output:\n{server.text()}")


def port_is_open(port: int) -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_with_no_settings_at_all_the_server_starts_and_enforces_a_generated_key_it_prints_once() -> None:
    port = free_port()
    with running(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], child_env(), port) as server:
        wait_healthy(server)
        key = wait_output(server, r"^Generated API key: (\S+)$").group(1)
        assert len(key) >= 32
        assert server.text().count("Generated API key") == 1
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            assert c.get("/api/v1/sessions").status_code == 401
            assert c.get("/api/v1/sessions", headers={"X-API-Key": "not-the-key"}).status_code == 401
            r = c.get("/api/v1/sessions", headers={"X-API-Key": key})
            assert r.status_code == 200 and r.json()["total"] == 0
            r = c.post("/api/v1/chat", json={"message": "who am I"}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
            info = c.get(f"/api/v1/sessions/{r.json()['session_id']}", headers={"X-API-Key": key}).json()
            assert info["user_id"] == "default"


@pytest.mark.parametrize("form", ["cli", "uvicorn"])
@pytest.mark.parametrize(("variable", "value", "word"), [
    ("MAX_CONNECTIONS", "lots", "integer"),
    ("API_KEYS", '["a", ', "JSON"),  # starts like JSON and does not parse: not a key `["a"`
    ("MYSQL_URL", "mysql://app:p@ss:w0rd@db:3306/dataagent", "percent-encoded"),  # not `invalid literal for int()`
])
def test_a_bad_setting_exits_non_zero_at_once_with_one_line_naming_the_variable(
    form: str, variable: str, value: str, word: str
) -> None:
    port = free_port()
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(port)] if form == "cli" else uvicorn_command(port)
    with running(args, child_env(**{variable: value}), port) as server:
        assert exit_code(server, timeout=10) != 0
    output = server.text()
    naming = [line for line in output.splitlines() if f"DATAAGENT_{variable}" in line]
    assert len(naming) == 1, output
    assert word in naming[0]
    assert "Traceback" not in output and "Generated API key" not in output
    assert not port_is_open(port)


def test_help_lists_every_environment_variable_with_its_default() -> None:
    from dataagent.entrypoints.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAGENT_")} | child_env()
    result = subprocess.run(cli_command() + ["--help"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    listed = re.findall(r"^  (DATAAGENT_[A-Z_]+) +(\S+)$", result.stdout, re.MULTILINE)
    assert [name for name, _ in listed] == [f"DATAAGENT_{field.upper()}" for field in Settings.model_fields]
    assert ("DATAAGENT_PORT", "8000") in listed and ("DATAAGENT_LOG_FORMAT", "text") in listed
    assert "README" in result.stdout


def test_a_bad_data_policy_file_stops_start_up_with_one_line_naming_the_place(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("policies:\n  alice:\n    tables:\n      orders: {rows: \"region = (\"}\n")
    port = free_port()
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(port)]
    with running(args, child_env(DATA_POLICY=str(policy)), port) as server:
        assert exit_code(server, timeout=10) != 0
    output = server.text()
    naming = [line for line in output.splitlines() if "DATAAGENT_DATA_POLICY" in line]
    assert len(naming) == 1, output
    assert naming[0].startswith(f"dataagent-server: DATAAGENT_DATA_POLICY={policy}: line 4, "
                                "policies.alice.tables.orders.rows: not a SQL condition")
    assert "Traceback" not in output and not port_is_open(port)


@pytest.mark.parametrize("how", ["env", "flag"])
def test_several_workers_with_the_memory_store_refuse_to_start_and_say_why(how: str) -> None:
    port = free_port()
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(port)]
    env = child_env()
    if how == "env":
        env |= child_env(WORKERS="2")
    else:
        args += ["--workers", "2"]
    with running(args, env, port) as server:
        assert exit_code(server, timeout=10) != 0
    output = server.text()
    assert "memory store" in output, output
    assert "WORKERS=2" in output
    assert "Traceback" not in output
    assert not port_is_open(port)


def test_the_seeds_documented_uvicorn_command_serves_the_api_with_the_configured_keys() -> None:
    port = free_port()
    with running(uvicorn_command(port), child_env(API_KEYS=f"alice:{KEY_A}"), port) as server:
        wait_healthy(server)
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            assert c.get("/api/v1/health").json()["status"] == "ok"
            assert c.get("/api/v1/sessions").status_code == 401
            r = c.post("/api/v1/chat", json={"message": "hello", "session_id": "uv-1"}, headers={"X-API-Key": KEY_A})
            assert r.status_code == 200 and r.json()["status"] == "completed"
            info = c.get("/api/v1/sessions/uv-1", headers={"X-API-Key": KEY_A}).json()
            assert info["user_id"] == "alice" and info["message_count"] == 2
        assert "Generated API key" not in server.text()


def test_the_port_flag_overrides_the_port_variable() -> None:
    port, env_port = free_port(), free_port()
    args = cli_command() + ["--host", "127.0.0.1", "--port", str(port)]
    with running(args, child_env(PORT=str(env_port), API_KEYS=KEY_A), port) as server:
        wait_healthy(server)
        assert httpx.get(f"{server.base_url}/api/v1/health", timeout=5).status_code == 200
        assert not port_is_open(env_port)


def output_after_query_keys(args: list[str], port: int, name: str = "api_key") -> str:
    """Start a server, send SECRET as the `name` query parameter on HTTP and WebSocket requests, stop it."""
    with running(args, child_env(API_KEYS=f"alice:{KEY_A}"), port) as server:
        wait_healthy(server)
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            url = f"/api/v1/sessions?{name}={SECRET}"
            assert c.get(url, headers={"X-API-Key": KEY_A}).status_code == 200
            assert c.get(url).status_code == 401
            assert c.get(f"/api/v1/health?{name}={SECRET}").status_code == 200
            assert c.get(f"/api/v1/no-such-route?{name}={SECRET}", headers={"X-API-Key": KEY_A}).status_code == 404
            r = c.get(f"/api/v1/sessions/s?other=1&{name}={SECRET}", headers={"X-API-Key": KEY_A})
            assert r.status_code == 404
        ws_url = f"ws://127.0.0.1:{port}/ws/chat/s1?{name}={SECRET}"
        with contextlib.suppress(websockets.exceptions.WebSocketException, OSError, TimeoutError), \
                connect(ws_url, additional_headers={"X-API-Key": KEY_A}, open_timeout=5) as ws:
            ws.recv(timeout=2)
    return server.text()


def server_args(command: str, port: int, level: str) -> list[str]:
    if command == "cli":
        return cli_command() + ["--host", "127.0.0.1", "--port", str(port), "--log-level", level]
    return uvicorn_command(port, "--log-level", level)


@pytest.mark.parametrize("command", ["cli", "uvicorn"])
def test_an_api_key_in_a_query_string_never_reaches_the_servers_output(command: str) -> None:
    port = free_port()
    output = output_after_query_keys(server_args(command, port, "info"), port)
    assert "Application startup complete" in output, output  # the info-level log was on
    assert "api_key=" in output or command == "cli", output  # uvicorn's access log shows the redacted URL
    assert SECRET not in output, output


def test_an_api_key_in_a_query_string_never_reaches_the_output_even_at_trace_level() -> None:
    port = free_port()
    output = output_after_query_keys(server_args("cli", port, "trace"), port)
    assert "TRACE" in output
    assert SECRET not in output


def test_an_api_key_under_a_percent_encoded_parameter_name_never_reaches_the_output() -> None:
    port = free_port()
    output = output_after_query_keys(server_args("uvicorn", port, "info"), port, name="api%5Fkey")
    assert SECRET not in output


def test_version_flag_prints_the_version_and_exits_zero() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAGENT_")} | child_env()
    result = subprocess.run(cli_command() + ["--version"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("dataagent-server ") and dataagent.__version__ in result.stdout


def test_the_dockerfile_healthcheck_passes_on_the_port_in_dataagent_port_and_fails_elsewhere() -> None:
    from tests.unit.test_compose import healthcheck_command

    command = [sys.executable, *healthcheck_command()[1:]]  # `python` of the image: this interpreter
    port, nothing = free_port(), free_port()
    with running(cli_command(), child_env(API_KEYS="k", HOST="127.0.0.1", PORT=str(port)), port) as server:
        wait_healthy(server)
        for listening, expected in ((port, 0), (nothing, 1)):
            env = {"PATH": os.environ["PATH"], "DATAAGENT_PORT": str(listening)}
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
            assert done.returncode == expected, done.stderr
