"""A server that runs open asks no key; a server at capacity shows "busy, retrying" until a slot frees."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.browser.harness import Tab, server
from tests.support import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with server(DATAAGENT_AUTH_DISABLED="true", DATAAGENT_API_KEYS="", DATAAGENT_MAX_CONNECTIONS="1") as proc:
        yield proc


def test_with_auth_disabled_there_is_no_key_prompt(tab: Tab) -> None:
    tab.open(key=None)
    assert tab.page.locator("#key-dialog[open]").count() == 0
    assert tab.page.locator("#forget-key").is_hidden()
    tab.ask("Hello without a key")
    tab.last_run("completed")
    tab.shot("auth-disabled")


def test_at_capacity_the_app_says_busy_and_retries_until_a_slot_frees(context: Any, srv: ServerProcess) -> None:
    tab = Tab(context, srv)
    with connect(f"{srv.ws_url}/ws/chat/capacity-holder", open_timeout=10) as holder:
        assert '"connected"' in str(holder.recv(timeout=10))
        tab.page.goto(srv.base_url + "/")
        tab.page.wait_for_selector('body[data-socket="busy"]', state="attached")
        expect(tab.page.locator("#status")).to_have_text("Server busy, retrying…")
        tab.shot("capacity-busy")
    tab.page.wait_for_selector('body[data-socket="open"]', state="attached")
    expect(tab.page.locator("#status")).to_have_text("")
    tab.ask("Now there is room")
    tab.last_run("completed")
    assert tab.errors == [] and tab.guard.foreign == []
