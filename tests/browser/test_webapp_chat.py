"""The web app in a real Chromium: asking, streaming, history, stop, reload mid-answer, two tabs, delete."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.harness import Tab, stored_messages
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.integration


def assistant_of(srv: ServerProcess, session_id: str) -> dict[str, Any]:
    return [m for m in stored_messages(srv, session_id) if m["role"] == "assistant"][-1]


def test_a_question_streams_its_answer_and_the_answer_is_in_the_history_after_a_reload(tab: Tab) -> None:
    tab.open()
    tab.ask("How many customers are there?")
    partial = tab.wait_streaming()
    run = tab.last_run("completed")
    final = run.locator(".md").text_content()
    assert partial.strip() and len(partial.strip()) < len(final.strip())  # seen while streaming
    tab.page.reload()
    tab.page.wait_for_selector(".msg.user")
    assert tab.page.locator(".msg.user").last.text_content() == "How many customers are there?"
    stored = assistant_of(tab.srv, tab.session_id)
    assert tab.last_run("completed").locator(".md").text_content().strip() == stored["content"].strip()
    assert tab.page.locator("#sessions li").first.locator(".count").text_content() == "2 messages"
    tab.shot("chat-history")


def test_stop_keeps_the_partial_answer_marked_cancelled(tab: Tab) -> None:
    tab.open()
    tab.ask("Tell me a long story")
    tab.wait_streaming()
    tab.page.click("#stop")
    run = tab.last_run("cancelled")
    assert run.locator(".badge.cancelled").text_content() == "cancelled"
    shown = run.locator(".md").text_content().strip()
    stored = assistant_of(tab.srv, tab.session_id)
    assert stored["status"] == "cancelled" and shown == stored["content"].strip() and shown
    assert tab.page.locator("#stop").is_hidden()
    tab.shot("chat-stopped")


def test_a_reload_in_the_middle_of_an_answer_shows_it_complete_exactly_as_stored(tab: Tab) -> None:
    tab.open()
    tab.ask("What happens when I reload?")
    tab.wait_streaming()
    tab.page.reload()
    run = tab.last_run("completed")
    stored = assistant_of(tab.srv, tab.session_id)
    assert run.locator(".md").text_content().strip() == stored["content"].strip()
    assert tab.page.locator(".msg.assistant").count() == 1
    assert tab.page.locator(".msg.user").count() == 1
    tab.shot("chat-reloaded-mid-answer")


def test_two_tabs_on_one_session_see_the_same_run_and_a_cancel_from_one_shows_in_both(
    context: Any, tab: Tab
) -> None:
    tab.open()
    first = tab.session_id
    other = Tab(context, tab.srv).open(f"/#session={first}")
    tab.ask("Two tabs watching")
    other.wait_streaming()
    assert other.page.locator(".msg.user").last.text_content() == "Two tabs watching"
    other.page.click("#stop")
    for each in (tab, other):
        assert each.last_run("cancelled").locator(".badge.cancelled").count() == 1
    assert tab.last_run().locator(".md").text_content() == other.last_run().locator(".md").text_content()
    other.shot("two-tabs-other")
    tab.shot("two-tabs-asker")
    assert other.errors == [] and other.guard.foreign == []


def test_deleting_a_session_asks_first_and_removes_it(tab: Tab) -> None:
    response = httpx.post(f"{tab.srv.base_url}/api/v1/chat", headers={"X-API-Key": KEY_A},
                          json={"message": "SELECT 1 AS to_be_deleted"}, timeout=10)
    session_id = response.json()["session_id"]
    tab.open()
    item = tab.page.locator(f'#sessions li[data-session-id="{session_id}"]')
    tab.page.once("dialog", lambda dialog: dialog.dismiss())
    item.locator(".delete").click()
    assert item.count() == 1  # dismissed: kept
    tab.page.once("dialog", lambda dialog: dialog.accept())
    item.locator(".delete").click()
    item.wait_for(state="detached")
    gone = httpx.get(f"{tab.srv.base_url}/api/v1/sessions/{session_id}", headers={"X-API-Key": KEY_A}, timeout=10)
    assert gone.status_code == 404
    tab.shot("session-deleted")


def test_the_language_follows_the_browser_and_can_be_switched(browser: Any, srv: ServerProcess) -> None:
    context = browser.new_context(locale="zh-CN")
    try:
        tab = Tab(context, srv).open()
        assert tab.page.locator("#new-chat").text_content() == "新对话"
        assert tab.page.get_attribute("html", "lang") == "zh-CN"
        assert tab.page.get_attribute("#log", "aria-label") == "对话"
        tab.page.select_option("#lang", "en")
        assert tab.page.locator("#new-chat").text_content() == "New chat"
        assert tab.page.get_attribute("#question", "placeholder").startswith("Ask a question")
        tab.page.select_option("#lang", "zh-CN")
        tab.page.reload()
        tab.page.wait_for_selector('body[data-socket="open"]', state="attached")
        assert tab.page.locator("#send").text_content() == "发送"
        tab.shot("language-zh")
        assert tab.errors == []
    finally:
        context.close()


def test_the_key_is_asked_once_and_a_wrong_key_is_refused_plainly(tab: Tab) -> None:
    page = tab.page
    page.goto(tab.srv.base_url + "/")
    page.wait_for_selector("#key-dialog[open]")
    assert page.locator("label[for=api-key]").text_content() == "API key"
    page.fill("#api-key", "not-the-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-error")).to_have_text("This API key is not valid for this server.")
    assert page.evaluate("() => sessionStorage.getItem('dataagent.apiKey')") is None
    tab.shot("key-wrong")
    tab.sign_in(KEY_A)
    page.wait_for_selector('body[data-socket="open"]', state="attached")
    assert page.locator("#key-dialog[open]").count() == 0
    assert page.evaluate("() => sessionStorage.getItem('dataagent.apiKey')") == KEY_A
    assert KEY_A not in page.url
    page.reload()  # kept for the tab: no second prompt
    page.wait_for_selector('body[data-socket="open"]', state="attached")
    assert page.locator("#key-dialog[open]").count() == 0
