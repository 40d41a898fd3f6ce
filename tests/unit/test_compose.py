"""docker-compose.yml and the Dockerfile, checked for structure (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataagent.entrypoints.cli import multi_worker_problem
from dataagent.entrypoints.container import mysql_url
from dataagent.entrypoints.settings import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
_DEFAULTED = re.compile(r"^\$\{(?P<name>\w+):?-(?P<default>[^}]*)\}$")
_REQUIRED = re.compile(r"^\$\{(?P<name>\w+):\?(?P<error>[^}]+)\}$")
COMPOSE_KEY = "demo:compose-test-key"  # what an operator sets for a required `${NAME:?...}`


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def resolved(value: Any) -> str:
    """A compose value with `${NAME:-default}` replaced by its default, as with an empty environment, and a
    required `${NAME:?error}` by what an operator sets."""
    match = _DEFAULTED.match(str(value))
    if match:
        return match.group("default")
    return COMPOSE_KEY if _REQUIRED.match(str(value)) else str(value)


def test_compose_requires_an_api_key_so_a_restart_keeps_the_clients_key(compose: dict[str, Any]) -> None:
    """Empty, the server would generate a new key at each restart; compose refuses to start without one."""
    value = compose["services"]["server"]["environment"]["DATAAGENT_API_KEYS"]
    required = _REQUIRED.match(value)
    assert required and required.group("name") == "DATAAGENT_API_KEYS", value
    assert "DATAAGENT_API_KEYS" in required.group("error")
    settings = load_settings(api_keys=resolved(value))
    assert settings.api_keys == [COMPOSE_KEY]


def healthcheck_command() -> list[str]:
    """The exec form of the Dockerfile's HEALTHCHECK (continued over lines with a backslash)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert found, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    return list(json.loads(found.group(1)))


def test_the_dockerfile_healthcheck_reads_the_port_from_dataagent_port() -> None:
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"] and "DATAAGENT_PORT" in command[2] and ":8000/" not in command[2]


def test_there_is_a_server_a_mysql_and_a_redis_service_and_a_named_volume(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"server", "mysql", "redis"}
    mysql = compose["services"]["mysql"]
    assert re.match(r"^(mariadb|mysql):\d", mysql["image"])
    assert "mysql-data:/var/lib/mysql" in mysql["volumes"] and "mysql-data" in compose["volumes"]
    assert "--character-set-server=utf8mb4" in mysql["command"]
    assert any(flag.startswith("--max-allowed-packet=") for flag in mysql["command"])


def test_mysql_has_a_healthcheck_and_the_server_waits_for_it(compose: dict[str, Any]) -> None:
    check = compose["services"]["mysql"]["healthcheck"]
    assert check["test"][0] == "CMD" and len(check["test"]) > 1
    assert {"interval", "timeout", "retries"} <= set(check)
    server = compose["services"]["server"]
    assert server["depends_on"]["mysql"]["condition"] == "service_healthy"


def test_redis_has_a_healthcheck_keeps_nothing_on_disk_and_the_server_waits_for_it(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.match(r"^redis:\d", redis["image"])
    check = redis["healthcheck"]
    assert check["test"] == ["CMD", "redis-cli", "ping"] and {"interval", "timeout", "retries"} <= set(check)
    assert "--appendonly" in redis["command"] and "volumes" not in redis  # as docs/SCALING.md describes
    assert compose["services"]["server"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_server_runs_two_workers_on_the_redis_broker_which_the_cli_accepts(compose: dict[str, Any]) -> None:
    env = {k: resolved(v) for k, v in compose["services"]["server"]["environment"].items()}
    settings = load_settings(**{name[len(ENV_PREFIX):].lower(): value for name, value in env.items()})
    assert settings.workers == 2 and settings.broker == "redis" and settings.session_store == "mysql"
    assert settings.redis_url == "redis://redis:6379/0"
    assert multi_worker_problem(settings) is None


def test_the_server_is_built_here_uses_the_mysql_store_and_publishes_its_port(compose: dict[str, Any]) -> None:
    server = compose["services"]["server"]
    assert server["build"] == "." and (ROOT / "Dockerfile").is_file()
    env = server["environment"]
    assert env["DATAAGENT_SESSION_STORE"] == "mysql" and env["DATAAGENT_MYSQL_HOST"] == "mysql"
    assert "8000:8000" in server["ports"]


def test_every_server_variable_is_a_real_setting_and_the_settings_load(compose: dict[str, Any]) -> None:
    env = {k: resolved(v) for k, v in compose["services"]["server"]["environment"].items()}
    for name in env:
        assert name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].lower() in Settings.model_fields, name
    overrides = {name[len(ENV_PREFIX):].lower(): value for name, value in env.items()}
    settings = load_settings(**overrides)
    url = mysql_url(settings)
    assert (url.host, url.port, url.database) == ("mysql", 3306, "dataagent")


def test_the_server_and_the_database_agree_on_user_password_and_database(compose: dict[str, Any]) -> None:
    db = compose["services"]["mysql"]["environment"]
    server = compose["services"]["server"]["environment"]
    assert server["DATAAGENT_MYSQL_DATABASE"] == db["MARIADB_DATABASE"]
    assert server["DATAAGENT_MYSQL_USER"] == db["MARIADB_USER"]
    assert server["DATAAGENT_MYSQL_PASSWORD"] == db["MARIADB_PASSWORD"]  # the same variable and default


def test_the_dockerfile_installs_the_package_and_runs_the_cli_as_a_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.MULTILINE)
    assert "COPY pyproject.toml README.md" in text and "COPY src ./src" in text
    assert re.search(r"^USER \w+", text, re.MULTILINE) and "EXPOSE 8000" in text
    assert text.rstrip().endswith('CMD ["dataagent-server"]')
