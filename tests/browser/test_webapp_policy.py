"""The approval card under a data policy (examples/data-policy.yaml): the statement as written and as it will run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.harness import Tab, server
from tests.support import ServerProcess

pytestmark = pytest.mark.integration

EXAMPLE = str(Path(__file__).parents[2] / "examples" / "data-policy.yaml")


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with server(DATAAGENT_DATA_POLICY=EXAMPLE, DATAAGENT_DEMO_CHUNK_DELAY_MS="1") as proc:
        yield proc


def test_the_card_shows_the_statement_as_written_and_as_it_will_run(tab: Tab) -> None:
    tab.open()
    tab.ask("SELECT country, COUNT(*) AS n FROM customers GROUP BY country")
    tab.page.wait_for_selector(".approval")
    card: Any = tab.page.locator(".approval").last

    assert "FROM customers GROUP BY" in card.locator(".policy-sql > pre.sql").text_content()
    assert "WHERE country = 'China'" in card.locator(".executed-sql pre.sql").text_content()
    assert card.locator(".sql-label").all_text_contents() == [
        "As written:", "As it will run (data policy analysts):"]
    tab.shot("sql-approval-card-policy")
    card.locator("button.approve").click()
    expect(card.locator(".outcome")).to_have_text("Approved")
    result = tab.page.locator(".result").last
    result.wait_for()
    assert result.locator("tbody tr td:nth-child(1)").all_text_contents() == ["China"]
