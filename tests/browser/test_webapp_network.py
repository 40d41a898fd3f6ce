"""Losing the network: the app reconnects with backoff and resumes with after_seq, or reloads the history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.harness import Tab, server, stored_messages
from tests.support import KEY_A, ServerProcess
from tests.tcp_proxy import ThreadedTcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    with server(DATAAGENT_REPLAY_EVENTS="10") as proc:  # the smallest replay buffer: a long cut outlives it
        yield proc


@pytest.fixture
def proxy(srv: ServerProcess) -> Iterator[ThreadedTcpProxy]:
    tcp = ThreadedTcpProxy("127.0.0.1", srv.port).start()
    try:
        yield tcp
    finally:
        tcp.close()


def run_ended(srv: ServerProcess, session_id: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{srv.base_url}/api/v1/sessions/{session_id}", headers={"X-API-Key": KEY_A}, timeout=5)
        if info.status_code == 200 and info.json()["active_run_id"] is None:
            return
        time.sleep(0.05)  # the poll's interval
    raise AssertionError("the run did not end")


def open_through(context: Any, srv: ServerProcess, proxy: ThreadedTcpProxy) -> tuple[Tab, list[str]]:
    tab = Tab(context, srv, base_url=f"http://127.0.0.1:{proxy.port}")
    sockets: list[str] = []
    tab.page.on("websocket", lambda ws: sockets.append(ws.url))
    return tab.open(), sockets


def test_a_short_cut_resumes_with_after_seq_and_nothing_doubled_or_missing(
    context: Any, srv: ServerProcess, proxy: ThreadedTcpProxy
) -> None:
    tab, sockets = open_through(context, srv, proxy)
    tab.ask("What if the network drops?")
    tab.wait_streaming()
    proxy.cut()
    tab.page.wait_for_selector('body[data-socket="reconnecting"]', state="attached")
    assert tab.page.locator("#status").text_content() == "Connection lost, reconnecting…"
    tab.shot("network-reconnecting")
    proxy.restore()
    run = tab.last_run("completed")
    stored = [m for m in stored_messages(srv, tab.session_id) if m["role"] == "assistant"][-1]
    assert run.locator(".md").text_content().strip() == stored["content"].strip()
    assert "after_seq=" in sockets[-1] and "after_seq=" not in sockets[0]
    assert tab.page.locator(".msg.assistant").count() == 1 and tab.page.locator(".msg.user").count() == 1
    assert tab.page.locator("#status").text_content() == ""
    assert tab.errors == [] and tab.guard.foreign == []


def test_when_the_replay_is_gone_the_history_is_reloaded_over_rest(
    context: Any, srv: ServerProcess, proxy: ThreadedTcpProxy
) -> None:
    tab, sockets = open_through(context, srv, proxy)
    tab.ask("A long cut")
    tab.wait_streaming()
    proxy.cut()
    run_ended(srv, tab.session_id)  # every event after the cut has left the 10-event replay buffer
    proxy.restore()
    run = tab.last_run("completed")
    stored = [m for m in stored_messages(srv, tab.session_id) if m["role"] == "assistant"][-1]
    assert run.locator(".md").text_content().strip() == stored["content"].strip()
    assert "after_seq=" in sockets[-1]
    assert tab.page.locator(".msg.assistant").count() == 1 and tab.page.locator(".msg.user").count() == 1
    assert tab.page.locator("#stop").is_hidden()
    tab.ask("And the next question works")  # the app knows no run is active any more
    tab.page.locator(".msg.assistant").nth(1).locator(".md").wait_for()
    tab.shot("network-history-reloaded")
    assert tab.errors == [] and tab.guard.foreign == []
