"""Browser test harness: Debian's Chromium driven by Playwright, against `dataagent-server` processes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import KEY_A, ServerProcess, cli_command, free_port, spawn, wait_healthy

CHROMIUM = os.environ.get("DATAAGENT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 15_000
SQL_COUNT = "SELECT country, COUNT(*) AS n FROM customers GROUP BY country"


def require_browser() -> None:
    """Skip without Chromium or Playwright on a developer machine; under CI=true that is a failure."""
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@contextmanager
def server(**env: str) -> Iterator[ServerProcess]:
    """A real `dataagent-server` on 127.0.0.1 with the demo engine, answers slow enough to stop or reload."""
    port = free_port()
    values = {
        "DATAAGENT_AGENT": "demo", "DATAAGENT_API_KEYS": f"alice:{KEY_A}", "DATAAGENT_DEMO_CHUNKS": "20",
        "DATAAGENT_DEMO_CHUNK_DELAY_MS": "150", "DATAAGENT_LOG_LEVEL": "warning",
    }
    values.update(env)
    proc = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)], values, port)
    try:
        wait_healthy(proc)
        yield proc
    finally:
        proc.stop()


@contextmanager
def playwright_driver() -> Iterator[Any]:
    """One Playwright driver: the sync API cannot start a second one while another runs in the thread."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@contextmanager
def chromium(playwright: Any, *extra_flags: str) -> Iterator[Any]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + list(extra_flags))
    try:
        yield browser
    finally:
        browser.close()


class OfflineGuard:
    """Aborts, and records, every request a page makes to a host other than the server's."""

    def __init__(self, base_url: str) -> None:
        self.netloc = urlsplit(base_url).netloc
        self.foreign: list[str] = []

    def __call__(self, route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.netloc == self.netloc:
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()


class Tab:
    """One browser tab on the app, with the page's errors and its foreign requests recorded."""

    def __init__(self, context: Any, srv: ServerProcess, base_url: str | None = None) -> None:
        self.srv = srv
        self.base_url = base_url or srv.base_url
        self.page = context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.guard = OfflineGuard(self.base_url)
        self.page.route("**/*", self.guard)

    def open(self, path: str = "/", key: str | None = KEY_A) -> Tab:
        self.page.goto(self.base_url + path)
        if key is not None:
            self.sign_in(key)
        self.page.wait_for_selector('body[data-socket="open"]', state="attached")
        return self

    def sign_in(self, key: str) -> None:
        self.page.wait_for_selector("#key-dialog[open]")
        self.page.fill("#api-key", key)
        self.page.click("#key-form button[type=submit]")

    def ask(self, text: str) -> None:
        self.page.wait_for_selector('body[data-socket="open"] #send:not([disabled])')
        self.page.fill("#question", text)
        self.page.press("#question", "Enter")

    @property
    def session_id(self) -> str:
        match = re.search(r"#session=([\w-]+)", self.page.url)
        assert match, self.page.url
        return match.group(1)

    def last_run(self, status: str | None = None) -> Any:
        selector = ".msg.assistant" + (f'[data-status="{status}"]' if status else "")
        self.page.wait_for_selector(selector)
        return self.page.locator(selector).last

    def wait_streaming(self) -> str:
        """Waits until the running answer shows some text, before its end; returns that text."""
        handle = self.page.wait_for_function(
            "() => { const runs = document.querySelectorAll('.msg.assistant:not([data-status]) .md');"
            " const md = runs[runs.length - 1]; return md && md.textContent.trim() ? md.textContent : null; }"
        )
        return str(handle.json_value())

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def stored_messages(srv: ServerProcess, session_id: str, key: str = KEY_A) -> list[dict[str, Any]]:
    response = httpx.get(f"{srv.base_url}/api/v1/sessions/{session_id}/messages", headers={"X-API-Key": key},
                         timeout=10)
    response.raise_for_status()
    return list(response.json()["messages"])
