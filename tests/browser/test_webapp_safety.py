"""Untrusted text (the question, a database value, an error message) never becomes HTML or script."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.harness import Tab

pytestmark = pytest.mark.integration

SCRIPT = "<script>window.__pwned = 'script'</script>"
IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
LINK = "[click me](javascript:window.__pwned='link')"
FLAG = "() => window.__pwned === undefined && !document.querySelector('#log script, #log img, #log iframe')"


def assert_inert(tab: Tab) -> None:
    assert tab.page.evaluate(FLAG), "a payload became live HTML"
    assert tab.page.locator("#log a[href^='javascript' i]").count() == 0
    hrefs = tab.page.locator("#log a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert all(h.startswith(("http://", "https://")) for h in hrefs), hrefs


def test_the_page_forbids_inline_script_and_eval(tab: Tab) -> None:
    response = httpx.get(tab.srv.base_url + "/", timeout=10)
    csp = {d.split()[0]: d.split()[1:] for d in response.headers["content-security-policy"].split("; ")}
    assert csp["script-src"] == ["'self'"] and csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in csp["default-src"] and "'unsafe-eval'" not in str(csp["script-src"])
    tab.open()
    # the browser enforces it: an inline script added to the page does not run
    tab.page.evaluate("() => { const s = document.createElement('script');"
                      " s.textContent = \"window.__pwned = 'inline'\"; document.body.append(s); }")
    assert tab.page.evaluate("() => window.__pwned") is None


def test_a_question_holding_markup_is_shown_as_text(tab: Tab) -> None:
    question = f"Hello {SCRIPT} {IMG} {LINK} and **bold** https://example.org/ok"
    tab.open()
    tab.ask(question)
    run = tab.last_run("completed")
    assert tab.page.locator(".msg.user").last.text_content() == question
    text = run.locator(".md").text_content()
    assert SCRIPT in text and IMG in text and "[click me](javascript:window.__pwned='link')" in text
    assert run.locator(".md strong").text_content() == "bold"
    assert run.locator(".md a").get_attribute("href") == "https://example.org/ok"
    assert_inert(tab)
    tab.page.reload()
    tab.last_run("completed")
    assert_inert(tab)
    tab.shot("safety-question")


def test_a_database_value_and_an_error_message_holding_markup_are_shown_as_text(tab: Tab) -> None:
    tab.open()
    values = SCRIPT.replace("'", "''"), IMG.replace("'", "''"), LINK.replace("'", "''")
    tab.ask(f"SELECT '{values[0]}' AS a, '{values[1]}' AS b, '{values[2]}' AS c")
    tab.page.locator(".approval").first.locator("button.approve").click()
    result = tab.page.locator(".result").last
    result.wait_for()
    assert result.locator("td").all_text_contents() == [SCRIPT, IMG, LINK]
    assert_inert(tab)
    tab.last_run("completed")
    table = "<img src=x onerror=window.__pwned='img'>"  # a quoted identifier: parsed, approved, then unknown
    tab.ask(f'SELECT * FROM "{table}"')
    card = tab.page.locator(".approval").nth(1)
    assert card.locator(".tables").text_content() == f"Tables: {table}"
    card.locator("button.approve").click()
    run = tab.last_run("completed")
    expect(run.locator(".md")).to_contain_text(table)  # the demo engine repeats the database's error message
    run.locator("details.tool summary").click()
    assert table in run.locator(".tool-output").text_content()
    assert run.locator("details.tool[data-status=error]").count() == 1
    assert_inert(tab)
    tab.ask(f"SELECT * FROM {IMG} {SCRIPT}")  # not even SQL: refused before approval; the parser's message
    run = tab.page.locator(".msg.assistant").nth(2)
    expect(run).to_have_attribute("data-status", "completed")
    assert IMG in run.locator(".tool-output").text_content()
    assert_inert(tab)
    tab.shot("safety-database")
