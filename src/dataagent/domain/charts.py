"""Charts of result tables: a Vega-Lite v5 spec over the table's own rows, or None when no chart suits it.

    chart_for({"columns": ["country", "n"], "rows": [["FR", 3], ["DE", 2]], "row_count": 2, "truncated": False})
    # -> a bar chart: x = country (nominal, in the rows' order), y = n (quantitative)

A spec holds its data inline (`data.values`, one object per row keyed by column name), declarative encodings
and at most a `fold` transform: never a URL, an expression or anything a model wrote. `$schema` names the
Vega-Lite version; clients do not fetch it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any

SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
MIN_ROWS = 2
MAX_CATEGORIES = 50
MAX_TIME_POINTS = 500
MAX_SERIES = 6

_DATE = re.compile(r"\d{4}-\d{2}(?:-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?)?")
_YEAR_NAME = re.compile(r"(?:^|[^a-z])(?:year|yr)s?(?:[^a-z]|$)|年", re.IGNORECASE)
_FIELD_SPECIALS = re.compile(r"""([\\.\[\]'"])""")
# Names Vega-Lite 5 / Vega 5 cannot reference even escaped (tried on vega-lite 5.23, vega 5.33): a backslash
# (Vega-Lite drops the escape when it re-escapes), a line break or other control character (it breaks the
# tooltip expression Vega-Lite writes), and the properties of JavaScript's Object.prototype.
_JS_OBJECT_PROPERTIES = frozenset({
    "__proto__", "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString",
    "toString", "valueOf", "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
})


class Kind(StrEnum):
    """What a column holds, as far as charts care."""

    CATEGORY = "category"  # text
    TIME = "time"  # ISO date or date-time text
    YEAR = "year"  # integers 1000..9999 in a column named like a year
    NUMBER = "number"
    EMPTY = "empty"  # only nulls
    MIXED = "mixed"  # anything else (booleans, mixed types)


VEGA_TYPE = {
    Kind.CATEGORY: "nominal", Kind.TIME: "temporal", Kind.YEAR: "ordinal", Kind.NUMBER: "quantitative",
    Kind.EMPTY: "nominal", Kind.MIXED: "nominal",
}


def field_ref(column: str) -> str:
    """`column` as a Vega-Lite field: dots, brackets, quotes and backslashes escaped (no nested access)."""
    return _FIELD_SPECIALS.sub(r"\\\1", column)


def referable(column: str) -> bool:
    """Whether a spec can name `column` as a field (see _JS_OBJECT_PROPERTIES for what cannot)."""
    if not column or "\\" in column or column in _JS_OBJECT_PROPERTIES:
        return False
    return not any(unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029" for ch in column)


def column_kind(name: str, values: Sequence[Any]) -> Kind:
    present = [v for v in values if v is not None]
    if not present:
        return Kind.EMPTY
    if all(_is_number(v) for v in present):
        if _YEAR_NAME.search(name) and all(isinstance(v, int) and 1000 <= v <= 9999 for v in present):
            return Kind.YEAR
        return Kind.NUMBER
    if all(isinstance(v, str) for v in present):
        return Kind.TIME if all(_is_iso_time(v) for v in present) else Kind.CATEGORY
    return Kind.MIXED


def table_shape(table: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]] | None:
    """The table's columns and rows if a chart can show them: unique referable names, rows as wide as them."""
    columns, rows = table.get("columns"), table.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list) or not columns:
        return None
    if not all(isinstance(c, str) and referable(c) for c in columns) or len(set(columns)) != len(columns):
        return None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return None
    return columns, rows


def column_kinds(columns: list[str], rows: list[list[Any]]) -> dict[str, Kind]:
    return {name: column_kind(name, [row[i] for row in rows]) for i, name in enumerate(columns)}


def chart_for(table: Mapping[str, Any]) -> dict[str, Any] | None:
    """A bar chart (category x numbers) or a line chart (time x numbers) of `table`, or None."""
    shape = table_shape(table)
    if shape is None or table.get("truncated"):
        return None
    columns, rows = shape
    kinds = column_kinds(columns, rows)
    if Kind.MIXED in kinds.values():
        return None
    dimensions = [c for c, k in kinds.items() if k in (Kind.CATEGORY, Kind.TIME, Kind.YEAR)]
    measures = [c for c, k in kinds.items() if k is Kind.NUMBER]
    if len(dimensions) != 1 or not 1 <= len(measures) <= MAX_SERIES:
        return None
    [dimension] = dimensions
    mark = "bar" if kinds[dimension] is Kind.CATEGORY else "line"
    limit = MAX_CATEGORIES if mark == "bar" else MAX_TIME_POINTS
    keys = [row[columns.index(dimension)] for row in rows]
    if not MIN_ROWS <= len(rows) <= limit or len(set(keys)) != len(keys):
        return None
    return build_spec(columns, rows, kinds, mark, {"x": dimension}, measures)


def build_spec(
    columns: list[str], rows: list[list[Any]], kinds: Mapping[str, Kind], mark: str,
    channels: Mapping[str, str], measures: Sequence[str] = (), title: str | None = None,
) -> dict[str, Any]:
    """A spec of `mark` with each channel (x, y, color, theta) naming a column; several `measures` (the y
    of x-y marks) are folded into one value column coloured by measure name, side by side for bars."""
    encoding = {channel: _encode(column, kinds[column]) for channel, column in channels.items()}
    if mark == "bar" and "x" in encoding and kinds[channels["x"]] is not Kind.NUMBER:
        encoding["x"]["sort"] = None  # the rows' order (the query's ORDER BY)
    spec: dict[str, Any] = {"$schema": SCHEMA}
    if title:
        spec["title"] = title
    spec["data"] = {"values": [dict(zip(columns, row, strict=True)) for row in rows]}
    if len(measures) == 1:
        encoding["y"] = _encode(measures[0], Kind.NUMBER)
    elif measures:
        key, value = _fresh_names(columns)
        spec["transform"] = [{"fold": [field_ref(m) for m in measures], "as": [key, value]}]
        encoding["y"] = {"field": value, "type": "quantitative", "title": None}
        encoding["color"] = {"field": key, "type": "nominal", "title": None, "sort": list(measures)}
        if mark == "bar":
            encoding["xOffset"] = {"field": key, "type": "nominal", "sort": list(measures)}
    tooltip = [{k: v for k, v in encoding[c].items() if k != "sort"} for c in ("x", "y", "theta", "color")
               if c in encoding]
    mark_def: dict[str, Any] = {"type": mark}
    if mark in ("line", "area") and "x" in encoding and encoding["x"]["type"] != "nominal":
        mark_def["point"] = len(rows) <= 100
    spec["mark"] = mark_def
    spec["encoding"] = {**encoding, "tooltip": tooltip}
    return spec


def _encode(column: str, kind: Kind) -> dict[str, Any]:
    return {"field": field_ref(column), "type": VEGA_TYPE[kind], "title": column}


def _fresh_names(columns: list[str]) -> tuple[str, str]:
    """Names for the folded key and value that no column has (they must not overwrite a column)."""
    taken = set(columns)
    key, value = "series", "value"
    while key in taken:
        key += "_"
    while value in taken:
        value += "_"
    return key, value


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _is_iso_time(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        (date.fromisoformat(text + "-01") if len(text) == 7 else datetime.fromisoformat(text))
    except ValueError:
        return False
    return True
