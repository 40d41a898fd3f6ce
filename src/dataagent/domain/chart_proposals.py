"""A chart the model proposes, checked against an allow-list and drawn by our own spec builder.

    chart_from_proposal({"mark": "bar", "x": "country", "y": "n"}, latest_table)  # -> a Vega-Lite spec

The model only picks a mark and names columns (and may give a title): its arguments never become part of a
spec except as those validated names and title text. Anything else (another mark or key, a URL, an expression,
an unknown column) raises ChartProposalError with a message for the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dataagent.domain.charts import MAX_TIME_POINTS, Kind, build_spec, column_kinds, table_shape

MARKS = ("bar", "line", "point", "area", "arc")
CHANNELS = ("x", "y", "color", "theta")
ARGUMENTS = ("mark", *CHANNELS, "title")
MAX_TITLE = 120
_NEEDS = {"arc": ("theta", "color")} | {mark: ("x", "y") for mark in ("bar", "line", "point", "area")}
_NUMERIC = ("y", "theta")
_URL = re.compile(r"[a-z][a-z0-9+.\-]*://|\b(?:javascript|data|vbscript|file|blob):|\bwww\.", re.IGNORECASE)
_CODE = re.compile(
    r"\b(?:datum|calculate|filter|expr|signal|transform|eval|function|lookup)\b|=>|\$\{|\{\{|<\s*[a-z/!]",
    re.IGNORECASE,
)


class ChartProposalError(ValueError):
    """A refused proposal; the message tells the model why, and what it may do instead."""


def chart_from_proposal(args: Mapping[str, Any], table: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec of an allowed proposal over `table` (the latest result), or ChartProposalError."""
    if table is None:
        raise ChartProposalError("There is no result to chart yet: run a query with run_sql first.")
    shape = table_shape(table)
    if shape is None or not 1 <= len(shape[1]) <= MAX_TIME_POINTS:
        raise ChartProposalError(
            "The latest result cannot be charted (no rows, more than "
            f"{MAX_TIME_POINTS} rows, or column names a chart cannot use); answer with the table instead."
        )
    columns, rows = shape
    _refuse_urls(args)
    unknown = sorted(str(key) for key in args if key not in ARGUMENTS)
    if unknown:
        raise ChartProposalError(
            f"Unknown argument(s) {', '.join(map(repr, unknown))}: the only arguments are {', '.join(ARGUMENTS)}."
        )
    mark = _mark(args.get("mark"))
    kinds = column_kinds(columns, rows)
    channels = {c: _column(c, args[c], columns) for c in CHANNELS if args.get(c) is not None}
    _check_channels(mark, channels, kinds)
    measures = (channels.pop("y"),) if "y" in channels else ()
    return build_spec(columns, rows, kinds, mark, channels, measures, _title(args.get("title")))


def describe(spec: Mapping[str, Any]) -> str:
    """One line for the model: what the accepted chart shows."""
    encoding = spec["encoding"]
    named = ", ".join(f"{c}={encoding[c]['title']}" for c in CHANNELS if c in encoding)
    return f"The chart is shown to the user under the result: a {spec['mark']['type']} chart ({named})."


def _refuse_urls(value: Any) -> None:
    for text in _strings(value):
        if _URL.search(text):
            raise ChartProposalError(
                "Refused: URLs are not allowed in a chart; it only shows the latest result's own rows."
            )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _mark(mark: Any) -> str:
    if isinstance(mark, str) and mark in MARKS:
        return mark
    shown = repr(mark) if isinstance(mark, str) else "a non-string mark"
    raise ChartProposalError(f"Unknown mark {shown[:60]}: use one of {', '.join(MARKS)}.")


def _column(channel: str, value: Any, columns: list[str]) -> str:
    if isinstance(value, str) and value in columns:
        return value
    if not isinstance(value, str):
        raise ChartProposalError(f"{channel} must name a column of the latest result, as a string.")
    if _CODE.search(value) or "(" in value:
        raise ChartProposalError(
            f"Refused: {channel} looks like an expression; charts take no expressions or code, only column names."
        )
    raise ChartProposalError(
        f"Unknown column {value[:60]!r} for {channel}: the latest result's columns are {', '.join(columns)[:500]}."
    )


def _check_channels(mark: str, channels: Mapping[str, str], kinds: Mapping[str, Kind]) -> None:
    needed = _NEEDS[mark]
    missing = [c for c in needed if c not in channels]
    extra = [c for c in channels if c not in needed and c != "color"]
    if missing or extra:
        raise ChartProposalError(
            f"A {mark} chart takes {' and '.join(needed)}" + ("" if mark == "arc" else " (and optionally color)")
            + f"; {'missing: ' + ', '.join(missing) if missing else 'not allowed: ' + ', '.join(extra)}."
        )
    for channel in _NUMERIC:
        if channel in channels and kinds[channels[channel]] is not Kind.NUMBER:
            raise ChartProposalError(f"{channel} must be a numeric column; {channels[channel]!r} is not.")


def _title(title: Any) -> str | None:
    if title is None:
        return None
    if not isinstance(title, str) or len(title) > MAX_TITLE or not title.isprintable():
        raise ChartProposalError(f"title must be plain text of at most {MAX_TITLE} characters.")
    if _CODE.search(title):
        raise ChartProposalError("Refused: the title looks like an expression or markup; give plain text.")
    return title.strip() or None
