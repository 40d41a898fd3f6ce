"""The web app ships inside the package: every file of webui/ is package data (checked against pyproject)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import dataagent
from dataagent.adapters.http.webui import WEBUI_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_every_webui_file_is_declared_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dataagent"]
    package = Path(dataagent.__file__).parent
    files = [p.relative_to(package).as_posix() for p in WEBUI_DIR.rglob("*") if p.is_file()]
    assert len(files) > 10
    undeclared = [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert undeclared == []


def test_the_page_loads_no_script_of_another_host_and_no_inline_script() -> None:
    page = (WEBUI_DIR / "index.html").read_text()
    assert "<script>" not in page and "http://" not in page and "https://" not in page
