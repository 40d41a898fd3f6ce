"""Reachability of the real services integration tests need (MariaDB, Redis).

Outside CI an unreachable service skips the test with the reason; under CI=true it fails it.
"""

from __future__ import annotations

import os
import socket

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# The Redis database tests may use (shared: each test has its own key prefix and deletes only its keys)
REDIS_DB = int(os.environ.get("DATAAGENT_TEST_REDIS_DB", "7"))


def redis_url(port: int = REDIS_PORT, db: int = REDIS_DB) -> str:
    return f"redis://{REDIS_HOST}:{port}/{db}"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(host: str, port: int, name: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if in_ci():
        pytest.fail(f"{reason}; under CI=true a missing service is a failure")
    pytest.skip(reason)
