"""Shared fixtures. Written to work whatever pytest-asyncio mode the configuration selects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fakes.openai_server import FakeOpenAI


@pytest_asyncio.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A running :class:`FakeOpenAI` with an empty script, stopped after the test."""
    async with FakeOpenAI() as fake:
        yield fake
