"""Regenerate docs/images/webapp-sql.png: the web app answering an SQL question (approval card, table, chart).

Run from the repository root with the dev extras installed and Debian's Chromium: python scripts/webui-screenshot.py
It starts `dataagent-server` with the demo engine on a free 127.0.0.1 port and stops it at the end.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

KEY = "screenshot-key-0123456789"
OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "webapp-sql.png"
SQL = "SELECT country, COUNT(*) AS customers FROM customers GROUP BY country ORDER BY customers DESC"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAGENT_", "OPENAI_"))}
    env.update(DATAAGENT_AGENT="demo", DATAAGENT_API_KEYS=f"analyst:{KEY}", DATAAGENT_LOG_LEVEL="warning")
    server = subprocess.Popen([sys.executable, "-m", "dataagent.entrypoints.cli", "--host", "127.0.0.1",
                               "--port", str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale="en-US")
            page.goto(base + "/")
            page.fill("#api-key", KEY)
            page.click("#key-form button[type=submit]")
            page.wait_for_selector('body[data-socket="open"] #send:not([disabled])')
            page.fill("#question", SQL)
            page.press("#question", "Enter")
            page.locator(".approval button.approve").click()
            page.locator(".result figure.chart svg .mark-rect path").first.wait_for()
            page.wait_for_selector('.msg.assistant[data-status="completed"]')
            page.locator(".result .table-wrap").evaluate("node => { node.style.maxHeight = '12rem'; }")
            page.evaluate("() => { const log = document.querySelector('#log'); log.scrollTop = 0; }")
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
    finally:
        server.terminate()
        server.wait(15)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
