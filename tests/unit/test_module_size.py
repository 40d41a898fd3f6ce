"""Every module under src/ stays small enough to hold in one's head (issue 16: at most 300 lines)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_LINES = 300


def test_every_module_under_src_is_at_most_300_lines() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert len(modules) > 50  # the tree was found
    too_long = {str(m.relative_to(SRC)): n for m in modules if (n := len(m.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}
