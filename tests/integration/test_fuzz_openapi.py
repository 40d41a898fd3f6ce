"""Schemathesis over the OpenAPI document, against a real server on the memory and the MySQL store.

Every generated request (valid and invalid) must get no 5xx, a documented status, and a body that matches the
document. The server is a subprocess (schemathesis calls it synchronously), with the demo engine made fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dataagent.entrypoints.app import create_app
from tests.mysqldb import MYSQL_HOST, MYSQL_PORT, create_database, drop_database
from tests.support import KEY_A, KEY_B, cli_command, free_port, make_settings, server_env, spawn, wait_healthy

pytestmark = pytest.mark.integration

EXAMPLES = 60  # per operation and store: ~8 operations x 2 stores x 60, under a minute in all
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(create_app(make_settings()).openapi())


def _store_env(store: str, database: str | None) -> dict[str, str]:
    env = {"DATAAGENT_AGENT": "demo", "DATAAGENT_API_KEYS": f"alice:{KEY_A},bob:{KEY_B}", "DATAAGENT_DEMO_CHUNKS": "2",
           "DATAAGENT_DEMO_CHUNK_DELAY_MS": "0", "DATAAGENT_HITL_TIMEOUT": "5", "DATAAGENT_LOG_LEVEL": "error",
           "DATAAGENT_KEY_SCOPES": "alice:admin"}  # the fuzzer's key reaches the admin routes' handlers
    if store == "mysql":
        env |= {"DATAAGENT_SESSION_STORE": "mysql", "DATAAGENT_MYSQL_HOST": MYSQL_HOST,
                "DATAAGENT_MYSQL_PORT": str(MYSQL_PORT), "DATAAGENT_MYSQL_DATABASE": str(database)}
    return env


@pytest.fixture(scope="module", params=["memory", pytest.param("mysql", marks=pytest.mark.mysql)])
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    database = asyncio.run(create_database("dataagent_fuzz")) if request.param == "mysql" else None
    port = free_port()
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)],
                   server_env(**_store_env(request.param, database)), port)
    try:
        wait_healthy(server)
        yield server.base_url
    finally:
        code = server.stop()
        if database is not None:
            asyncio.run(drop_database(database))
        assert "Traceback" not in server.text(), server.text()[-4000:]
        assert code in (0, -15), server.text()[-2000:]


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: Any, base_url: str) -> None:
    # A session's stream waits for the session's next run when none is running (PROTOCOL.md): the fuzzer's
    # sessions are alice's, so it watches them as bob, for whom each id is foreign or unused (404) or refused
    key = KEY_B if case.path.endswith("/{session_id}/stream") else KEY_A
    case.call_and_validate(base_url=base_url, headers={"X-API-Key": key}, checks=CHECKS, timeout=30)
