"""Offline: the app, /docs and /redoc render completely with every request to another host blocked."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.harness import SQL_COUNT, Tab, chromium
from tests.support import KEY_A, ServerProcess

pytestmark = pytest.mark.integration


def operations(srv: ServerProcess) -> int:
    """The REST operations of the server's OpenAPI document: what /docs and /redoc must each show."""
    paths = httpx.get(srv.base_url + "/openapi.json").json()["paths"]
    return sum(len(methods) for methods in paths.values())


def test_the_app_renders_and_charts_load_from_the_server_only(tab: Tab) -> None:
    tab.open()
    tab.ask(SQL_COUNT)
    tab.page.locator(".approval button.approve").click()
    tab.page.locator(".result table").wait_for(state="attached")
    tab.last_run("completed")
    # the chart libraries load from the server, and run under the page's CSP (no eval)
    rendered = tab.page.evaluate("""async () => {
        const { renderChart } = await import('/ui/js/chart.js');
        const target = document.createElement('div');
        document.querySelector('#log').append(target);
        await renderChart(target, {mark: 'bar', data: {values: [{c: 'a', n: 1}, {c: 'b', n: 3}]},
          encoding: {x: {field: 'c', type: 'nominal'}, y: {field: 'n', type: 'quantitative'}}});
        return target.querySelectorAll('svg .mark-rect path').length;
    }""")
    assert rendered == 2
    tab.shot("offline-app")
    assert tab.guard.foreign == []


def test_swagger_ui_renders_offline_and_authorize_then_try_it_out_works(tab: Tab) -> None:
    page = tab.page
    page.goto(tab.srv.base_url + "/docs")
    expect(page.locator(".opblock")).to_have_count(operations(tab.srv))
    page.locator("button.authorize").first.click()
    page.locator(".auth-container input[type=text], .auth-container input[type=password]").first.fill(KEY_A)
    page.locator(".auth-container").first.locator("button.authorize").click()
    page.locator("button.btn-done").first.click()
    operation = page.locator("#operations-sessions-list_sessions_api_v1_sessions_get")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    tab.shot("offline-docs")
    assert tab.guard.foreign == []


def test_redoc_renders_offline(tab: Tab) -> None:
    page = tab.page
    page.goto(tab.srv.base_url + "/redoc")
    expect(page.locator("h1").first).to_contain_text("DataAgent Server")
    expect(page.locator("[data-section-id*='/operation/']")).to_have_count(operations(tab.srv))
    tab.shot("offline-redoc")
    assert tab.guard.foreign == []


def test_the_app_works_from_an_intranet_host_over_plain_http(playwright: Any, srv: ServerProcess) -> None:
    """Not a secure context (no crypto.randomUUID, no async clipboard): the app must not depend on one."""
    with chromium(playwright, "--host-resolver-rules=MAP intranet.example 127.0.0.1") as browser:
        context = browser.new_context(locale="en-US")
        try:
            tab = Tab(context, srv, base_url=f"http://intranet.example:{srv.port}").open()
            assert tab.page.evaluate("() => window.isSecureContext") is False
            tab.ask(SQL_COUNT)
            tab.page.locator(".approval button.approve").click()
            result = tab.page.locator(".result").last
            result.locator("figure.chart svg").wait_for()
            result.locator(".copy-csv").click()
            expect(result.locator(".copy-csv")).to_have_text("Copied")
            tab.last_run("completed")
            tab.page.click("#new-chat")
            tab.ask("And a second chat")
            tab.last_run("completed")
            tab.shot("intranet-plain-http")
            assert tab.errors == [] and tab.guard.foreign == []
        finally:
            context.close()
