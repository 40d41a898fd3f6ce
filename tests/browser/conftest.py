"""Fixtures of the browser tests: one server and one Chromium per module, a fresh browser context per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.harness import Tab, chromium, playwright_driver, server
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with server() as proc:
        yield proc


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with playwright_driver() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    with chromium(playwright) as instance:
        yield instance


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(locale="en-US", accept_downloads=True, viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def tab(context: Any, srv: ServerProcess) -> Iterator[Tab]:
    tab = Tab(context, srv)
    yield tab
    assert tab.errors == [], f"errors in the page: {tab.errors}"
    assert tab.guard.foreign == [], f"requests to other hosts: {tab.guard.foreign}"
