"""Properties of the server's charts: every spec is valid Vega-Lite v5, made of the table's own rows and
columns only, for random tables (odd and unicode column names, mixed types, nulls)."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from dataagent.domain.charts import MAX_SERIES, chart_for, referable

ODD_NAME = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=8)
NAME = st.one_of(ODD_NAME, st.sampled_from(["a.b", "x[0]", "it's", '"q"', "a\\b", "..", "[", "]", "国家", "年份",
                                            "year", "series", "value", "__proto__", "n"]))
CELL = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6), st.dates().map(lambda d: d.isoformat()),
)
DAY = r"\d{4}-\d{2}-\d{2}"
_UNESCAPED_SPECIAL = re.compile(r"(?<!\\)(?:\\\\)*[.\[\]]")


@cache
def vega_lite_v5() -> jsonschema.Draft7Validator:
    """The Vega-Lite v5 JSON schema that the altair package ships (offline)."""
    text = resources.files("altair.vegalite.v5.schema").joinpath("vega-lite-schema.json").read_text("utf-8")
    return jsonschema.Draft7Validator(json.loads(text))


@st.composite
def random_tables(draw: st.DrawFn) -> dict[str, Any]:
    columns = draw(st.lists(NAME, min_size=1, max_size=5))
    rows = draw(st.lists(st.lists(CELL, min_size=len(columns), max_size=len(columns)), max_size=12))
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": False}


@st.composite
def chartable_tables(draw: st.DrawFn) -> dict[str, Any]:
    """One category, date or year column with distinct values and 1..MAX_SERIES numeric ones; any names."""
    n = draw(st.integers(2, 20))
    kind = draw(st.sampled_from(["category", "date", "year"]))
    if kind == "category":
        keys: list[Any] = draw(st.lists(st.text(min_size=1, max_size=6), min_size=n, max_size=n, unique=True))
        keys = [k if any(not c.isdigit() and c != "-" for c in k) else f"#{k}" for k in keys]  # never a date
    elif kind == "date":
        keys = [d.isoformat() for d in draw(st.lists(st.dates(), min_size=n, max_size=n, unique=True))]
    else:
        keys = draw(st.lists(st.integers(1000, 9999), min_size=n, max_size=n, unique=True))
    measures = draw(st.integers(1, MAX_SERIES))
    names = draw(st.lists(NAME, min_size=measures + 1, max_size=measures + 1, unique=True))
    if kind == "year":
        names[0] = "year " + names[0]
    number = st.one_of(st.integers(-(10**9), 10**9), st.floats(-1e9, 1e9, allow_nan=False))
    columns_of_values = [[draw(number) for _ in range(n)] for _ in range(measures)]
    rows = [[keys[i], *(col[i] for col in columns_of_values)] for i in range(n)]
    return {"columns": names, "rows": rows, "row_count": n, "truncated": False}


def fields_of(spec: dict[str, Any]) -> list[str]:
    """Every field reference of the spec: the encodings' (tooltips included) and the fold's."""
    found = [spec_field for fold in spec.get("transform", []) for spec_field in fold["fold"]]
    for channel in spec["encoding"].values():
        for definition in channel if isinstance(channel, list) else [channel]:
            found.append(definition["field"])
    return found


def unescape(field: str) -> str:
    assert not _UNESCAPED_SPECIAL.search(field), f"{field!r} would be a nested access"
    return re.sub(r"\\(.)", r"\1", field)


def strings_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


def assert_well_made(spec: dict[str, Any], table: dict[str, Any]) -> None:
    errors = sorted(vega_lite_v5().iter_errors(spec), key=str)
    assert not errors, errors[0].message
    folded = [name for fold in spec.get("transform", []) for name in fold["as"]]
    assert not set(folded) & set(table["columns"])
    assert {unescape(f) for f in fields_of(spec)} <= set(table["columns"]) | set(folded)
    assert spec["data"] == {"values": [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]}
    assert set(spec) <= {"$schema", "data", "transform", "mark", "encoding"}
    assert all(set(step) == {"fold", "as"} for step in spec.get("transform", []))
    assert "url" not in strings_in({k: v for k, v in spec.items() if k != "data"})


@settings(max_examples=150)
@given(random_tables())
def test_every_spec_made_from_a_random_table_is_valid_and_uses_only_its_columns(table: dict[str, Any]) -> None:
    spec = chart_for(table)

    if spec is not None:
        assert_well_made(spec, table)


@settings(max_examples=150)
@given(chartable_tables())
def test_a_dimension_with_numbers_is_charted_whenever_its_names_can_be_referenced(table: dict[str, Any]) -> None:
    spec = chart_for(table)

    if all(referable(c) for c in table["columns"]):
        assert spec is not None
        key = table["rows"][0][0]
        assert spec["mark"]["type"] == ("line" if isinstance(key, int) or re.fullmatch(DAY, key) else "bar")
        assert_well_made(spec, table)
    else:
        assert spec is None
