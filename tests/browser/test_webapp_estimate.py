"""The approval card shows the database's cost estimate, or that there is none."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.harness import SQL_COUNT, Tab

pytestmark = pytest.mark.integration


def test_the_approval_card_shows_the_estimated_rows_and_the_full_scans(tab: Tab) -> None:
    tab.open()
    tab.ask(SQL_COUNT)
    card = tab.page.locator(".approval").last
    estimate = card.locator(".estimate")
    expect(estimate).to_have_text("Estimate: about 50 rows · full scan of customers")
    expect(estimate).not_to_have_class("estimate unavailable")
    tab.shot("sql-approval-estimate")
    card.locator("button.approve").click()
    expect(card.locator(".outcome")).to_have_text("Approved")


def test_the_approval_card_says_when_the_estimate_is_unavailable(tab: Tab) -> None:
    tab.open()
    tab.ask("sql: EXPLAIN SELECT * FROM customers")
    card = tab.page.locator(".approval").last
    expect(card.locator(".estimate.unavailable")).to_have_text(
        "Estimate unavailable: no estimate for EXPLAIN statements")
    card.locator("button.reject").click()
    expect(card.locator(".outcome")).to_have_text("Rejected")
