"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, settings

from tests.fakes.openai_server import FakeOpenAI

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running FakeOpenAI (an OpenAI-compatible server on 127.0.0.1) with an empty script."""
    async with FakeOpenAI() as fake:
        yield fake
