"""Spies on a real method: it still runs, and each call's result is recorded (no behaviour replaced)."""

from __future__ import annotations

from typing import Any

import pytest


def record_results(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[Any]:
    """Patch `owner.name` (for this test) to record what each call returns; the list fills as calls come."""
    results: list[Any] = []
    method = getattr(owner, name)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        results.append(method(self, *args, **kwargs))
        return results[-1]

    monkeypatch.setattr(owner, name, spy)
    return results
