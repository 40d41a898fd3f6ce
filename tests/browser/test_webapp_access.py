"""A server that runs open asks no key; at capacity the app says "busy, retrying"; long histories page in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.browser.harness import Tab, server
from tests.support import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with server(DATAAGENT_AUTH_DISABLED="true", DATAAGENT_API_KEYS="", DATAAGENT_MAX_CONNECTIONS="1",
                DATAAGENT_DEMO_CHUNK_DELAY_MS="1") as proc:
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


def test_older_messages_load_when_scrolling_up_and_shift_enter_is_a_new_line(tab: Tab) -> None:
    with httpx.Client(base_url=tab.srv.base_url, timeout=10) as client:
        for i in range(20):  # 40 messages: the app shows the last 30, then the 10 before them on scroll
            client.post("/api/v1/chat", json={"message": f"question {i:02d}", "session_id": "long-history"})
    tab.open("/#session=long-history", key=None)
    bubbles = tab.page.locator(".msg.user")
    expect(bubbles).to_have_count(15)
    assert bubbles.first.text_content() == "question 05"
    tab.page.locator("#log").evaluate("log => { log.scrollTop = 0; }")
    expect(bubbles).to_have_count(20)
    assert bubbles.all_text_contents() == [f"question {i:02d}" for i in range(20)]
    assert tab.page.locator(".msg.assistant[data-status=completed]").count() == 20
    tab.page.locator("#question").click()
    tab.page.keyboard.type("first line")
    tab.page.keyboard.press("Shift+Enter")
    tab.page.keyboard.type("second line")
    assert tab.page.locator("#question").input_value() == "first line\nsecond line"
    tab.page.keyboard.press("Enter")
    expect(bubbles).to_have_count(21)
    assert bubbles.last.text_content() == "first line\nsecond line"
    tab.last_run("completed")
    tab.shot("long-history")
