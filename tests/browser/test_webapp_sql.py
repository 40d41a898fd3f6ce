"""SQL questions in the web app: the approval card, approve / edit / reject, result tables and charts."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.harness import SQL_COUNT, Tab
from tests.support import KEY_A

pytestmark = pytest.mark.integration


def card_of(tab: Tab) -> object:
    tab.page.wait_for_selector(".approval")
    return tab.page.locator(".approval").last


UNNAMED_CONTROLS = """() => [...document.querySelectorAll('button, input, select, textarea')]
    .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.textContent.trim()
                   && !c.getAttribute('aria-labelledby') && !c.title)
    .map((c) => c.outerHTML)"""


def test_the_approval_card_lays_out_the_statement_and_approving_shows_the_sorted_table(context: Any, tab: Tab) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab.open()
    tab.ask(SQL_COUNT)
    card = card_of(tab)
    assert card.locator(".statement-type").text_content() == "SELECT"
    assert card.locator(".badge.read-only").text_content() == "read-only"
    assert card.locator(".tables").text_content() == "Tables: customers"
    assert card.locator("pre.sql .kw").first.text_content() == "SELECT"
    assert "GROUP BY" in card.locator("pre.sql").text_content()
    expect(card.locator(".expires")).to_have_text(re.compile(r"^expires in [45]:\d\d$"))
    assert tab.page.evaluate(UNNAMED_CONTROLS) == []  # every control has a label
    tab.shot("sql-approval-card")
    card.locator("button.approve").click()
    expect(card.locator(".outcome")).to_have_text("Approved")
    result = tab.page.locator(".result").last
    result.wait_for()
    assert result.locator("th").all_text_contents() == ["country", "n"]
    assert result.locator(".row-count").text_content() == "8 rows"
    assert result.locator(".truncated").count() == 0
    result.locator("th button").nth(1).click()
    counts = [int(x) for x in result.locator("tbody tr td:nth-child(2)").all_text_contents()]
    assert counts == sorted(counts)
    result.locator("th button").nth(1).click()
    counts = [int(x) for x in result.locator("tbody tr td:nth-child(2)").all_text_contents()]
    assert counts == sorted(counts, reverse=True)
    result.locator(".copy-csv").click()
    expect(result.locator(".copy-csv")).to_have_text("Copied")
    copied = tab.page.evaluate("() => navigator.clipboard.readText()")
    assert copied.splitlines()[:2] == ["country,n", "China,15"]
    with tab.page.expect_download() as download:
        result.locator(".download-csv").click()
    csv = Path(download.value.path()).read_text()
    assert csv.splitlines()[0] == "country,n" and len(csv.splitlines()) == 9
    run = tab.last_run("completed")
    chart = result.locator("figure.chart")
    chart.locator("svg .mark-rect path").first.wait_for()  # the server's bar chart, drawn under the table
    assert chart.locator("svg .mark-rect path").count() == 8
    assert "country" in chart.locator("svg").text_content()
    tab.shot("sql-approved-table")
    result.locator("button.toggle-chart").click()
    assert chart.is_hidden() and result.locator("table").is_visible()
    result.locator("button.toggle-chart").click()
    assert chart.is_visible()
    tab.page.reload()  # the stored tool message holds the table and its chart
    tab.last_run("completed").locator(".result figure.chart svg .mark-rect path").first.wait_for()
    assert run.locator(".result th").all_text_contents() == ["country", "n"]


def test_a_truncated_result_says_so(tab: Tab) -> None:
    tab.open()
    tab.ask("SELECT id, customer_id FROM orders")  # 300 rows, over DATAAGENT_SQL_MAX_ROWS (200)
    card_of(tab).locator("button.approve").click()
    result = tab.page.locator(".result").last
    result.wait_for()
    assert result.locator(".truncated").text_content().startswith("truncated")
    assert result.locator("tbody tr").count() == 200


def test_editing_runs_the_edited_statement_and_shows_its_result(tab: Tab) -> None:
    tab.open()
    tab.ask(SQL_COUNT)
    card = card_of(tab)
    card.locator("button.edit").click()
    assert card.locator("textarea.edit-sql").input_value() == SQL_COUNT
    card.locator("textarea.edit-sql").fill("SELECT name, price FROM products WHERE category = 'Sports' ORDER BY price")
    card.locator("button.submit-edit").click()
    expect(card.locator(".outcome")).to_have_text("Edited and run")
    result = tab.page.locator(".result").last
    result.wait_for()
    assert result.locator("th").all_text_contents() == ["name", "price"]
    assert result.locator(".row-count").text_content() == "4 rows"
    tab.last_run("completed")
    tab.shot("sql-edited")


def test_rejecting_with_a_reason_shows_it_and_the_agent_goes_on(tab: Tab) -> None:
    tab.open()
    tab.ask("SELECT name, email FROM customers")
    card = card_of(tab)
    assert card.locator(".statement-type").text_content() == "SELECT"
    card.locator("input.reason").fill("not on a Friday")
    card.locator("button.reject").click()
    expect(card.locator(".outcome")).to_have_text("Rejected: not on a Friday")
    run = tab.last_run("completed")
    assert "did not run the statement" in run.locator(".md").text_content()
    assert run.locator(".result").count() == 0
    tab.shot("sql-rejected")


def test_a_write_gets_no_approval_card_and_the_answer_says_it_was_refused(tab: Tab) -> None:
    tab.open()
    tab.ask("DELETE FROM customers")
    run = tab.last_run("completed")
    assert "refused before approval" in run.locator(".md").text_content()
    assert tab.page.locator(".approval").count() == 0 and run.locator(".result").count() == 0


def test_a_decision_made_elsewhere_shows_on_the_card(tab: Tab) -> None:
    tab.open()
    tab.ask(SQL_COUNT)
    card = card_of(tab)
    interrupt_id = card.get_attribute("data-interrupt-id")
    url = f"{tab.srv.base_url}/api/v1/chat/{tab.session_id}/hitl"
    body = {"interrupt_id": interrupt_id, "decisions": [{"type": "approve"}]}
    thread = threading.Thread(target=httpx.post, args=(url,), kwargs={
        "json": body, "headers": {"X-API-Key": KEY_A}, "timeout": 20})
    thread.start()
    try:
        expect(card.locator(".outcome")).to_have_text("Approved (decided elsewhere)")
        assert card.locator("button.approve").is_hidden()
        tab.last_run("completed")
    finally:
        thread.join(20)
