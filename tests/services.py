"""Reachability of the external services that integration tests need."""

from __future__ import annotations

import os
import socket

import pytest


def require_service(host: str, port: int, name: str, timeout_s: float = 1.0) -> None:
    """Skip the test if `name` at host:port does not accept connections; under CI=true, fail instead."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI=true requires it", pytrace=False)
    pytest.skip(reason)
