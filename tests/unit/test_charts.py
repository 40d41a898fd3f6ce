"""Which result tables get which chart from the server, and which get none."""

from __future__ import annotations

from typing import Any

import pytest

from dataagent.domain.charts import MAX_CATEGORIES, MAX_SERIES, MAX_TIME_POINTS, chart_for, field_ref


def table(columns: list[str], rows: list[list[Any]], truncated: bool = False) -> dict[str, Any]:
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": truncated}


COUNTRIES = table(["country", "n"], [["France", 3], ["Germany", 2], ["Japan", 1]])


def test_a_category_and_a_number_make_a_bar_chart_over_the_tables_own_rows() -> None:
    spec = chart_for(COUNTRIES)

    assert spec is not None
    assert spec["$schema"] == "https://vega.github.io/schema/vega-lite/v5.json"
    assert spec["mark"] == {"type": "bar"}
    assert spec["data"] == {"values": [{"country": "France", "n": 3}, {"country": "Germany", "n": 2},
                                       {"country": "Japan", "n": 1}]}
    assert spec["encoding"]["x"] == {"field": "country", "type": "nominal", "title": "country", "sort": None}
    assert spec["encoding"]["y"] == {"field": "n", "type": "quantitative", "title": "n"}
    assert "transform" not in spec


def test_iso_dates_and_a_number_make_a_line_chart_with_a_temporal_x() -> None:
    spec = chart_for(table(["day", "revenue"], [["2024-01-01", 10.5], ["2024-01-02", 12], ["2024-01-03", None]]))

    assert spec is not None and spec["mark"]["type"] == "line"
    assert spec["encoding"]["x"]["type"] == "temporal"


@pytest.mark.parametrize("values", [
    ["2024-01", "2024-02"], ["2024-01-01T10:00:00", "2024-01-01T11:30:00"],
    ["2024-01-01 10:00:00", "2024-01-01 11:00:00.123"], ["2024-03-01T00:00:00+08:00", "2024-03-02T00:00:00Z"],
])
def test_months_and_date_times_as_iso_text_are_time(values: list[str]) -> None:
    spec = chart_for(table(["at", "n"], [[v, i] for i, v in enumerate(values)]))

    assert spec is not None and spec["encoding"]["x"]["type"] == "temporal"


def test_text_that_only_looks_like_dates_is_a_category() -> None:
    spec = chart_for(table(["day", "n"], [["2024-02-30", 1], ["2024-03-01", 2]]))

    assert spec is not None and spec["mark"]["type"] == "bar" and spec["encoding"]["x"]["type"] == "nominal"


def test_a_year_column_of_integers_is_an_ordinal_time_axis() -> None:
    spec = chart_for(table(["order_year", "n"], [[2022, 5], [2023, 7], [2024, 9]]))

    assert spec is not None and spec["mark"]["type"] == "line"
    assert spec["encoding"]["x"] == {"field": "order_year", "type": "ordinal", "title": "order_year"}


def test_integers_in_a_column_not_named_like_a_year_are_numbers_not_time() -> None:
    assert chart_for(table(["id", "n"], [[2022, 5], [2023, 7]])) is None


def test_several_numbers_are_folded_into_one_value_coloured_by_measure_side_by_side() -> None:
    spec = chart_for(table(["city", "orders", "revenue"], [["Paris", 3, 9.5], ["Lyon", 1, 2.0]]))

    assert spec is not None
    assert spec["transform"] == [{"fold": ["orders", "revenue"], "as": ["series", "value"]}]
    assert spec["encoding"]["y"]["field"] == "value"
    assert spec["encoding"]["color"]["field"] == "series"
    assert spec["encoding"]["xOffset"]["field"] == "series"


def test_the_fold_names_never_overwrite_a_column() -> None:
    spec = chart_for(table(["series", "value", "x"], [["a", 1, 2], ["b", 3, 4]]))

    assert spec is not None
    key, value = spec["transform"][0]["as"]
    assert key not in ("series", "value", "x") and value not in ("series", "value", "x")


def test_dots_brackets_and_quotes_in_column_names_are_escaped_in_fields_and_kept_in_data_and_titles() -> None:
    spec = chart_for(table(["a.b[0]", "it's \"n\""], [["x", 1], ["y", 2]]))

    assert spec is not None
    assert spec["encoding"]["x"]["field"] == "a\\.b\\[0\\]"
    assert spec["encoding"]["y"]["field"] == "it\\'s \\\"n\\\""
    assert spec["encoding"]["x"]["title"] == "a.b[0]"
    assert spec["data"]["values"][0] == {"a.b[0]": "x", "it's \"n\"": 1}


def test_field_ref_escapes_backslashes_too() -> None:
    assert field_ref("a\\b.c") == "a\\\\b\\.c"


def test_integers_of_any_size_are_numbers() -> None:
    spec = chart_for(table(["k", "n"], [["a", 10**400], ["b", -(10**30)]]))

    assert spec is not None and spec["encoding"]["y"]["type"] == "quantitative"


def test_unicode_column_names_and_values_are_charted() -> None:
    spec = chart_for(table(["国家", "订单数"], [["中国", 5], ["日本", 3]]))

    assert spec is not None and spec["encoding"]["x"]["field"] == "国家"


@pytest.mark.parametrize(("why", "columns", "rows"), [
    ("one row", ["country", "n"], [["France", 3]]),
    ("no rows", ["country", "n"], []),
    ("no numeric column", ["country", "city"], [["France", "Paris"], ["Japan", "Tokyo"]]),
    ("only numbers", ["a", "b"], [[1, 2], [3, 4]]),
    ("two text columns", ["country", "city", "n"], [["France", "Paris", 1], ["Japan", "Tokyo", 2]]),
    ("an all-null measure", ["country", "n"], [["France", None], ["Japan", None]]),
    ("an all-null dimension", ["country", "n"], [[None, 1], [None, 2]]),
    ("duplicate column names", ["n", "n"], [["a", 1], ["b", 2]]),
    ("an empty column name", ["", "n"], [["a", 1], ["b", 2]]),
    ("a backslash in a name", ["a\\b", "n"], [["a", 1], ["b", 2]]),
    ("a line break in a name", ["a\nb", "n"], [["a", 1], ["b", 2]]),
    ("a name of Object.prototype", ["constructor", "n"], [["a", 1], ["b", 2]]),
    ("repeated categories", ["country", "n"], [["France", 1], ["France", 2]]),
    ("booleans", ["flag", "n"], [[True, 1], [False, 2]]),
    ("mixed types in a column", ["country", "n"], [["France", 1], ["Japan", "two"]]),
    ("rows narrower than the columns", ["country", "n"], [["France"], ["Japan", 2]]),
    ("too many measures", ["k", *[f"m{i}" for i in range(MAX_SERIES + 1)]],
     [["a", *range(MAX_SERIES + 1)], ["b", *range(MAX_SERIES + 1)]]),
    ("too many categories", ["k", "n"], [[f"c{i}", i] for i in range(MAX_CATEGORIES + 1)]),
    ("too many time points", ["year", "n"], [[1000 + i, i] for i in range(MAX_TIME_POINTS + 1)]),
])
def test_tables_of_these_shapes_get_no_chart(why: str, columns: list[str], rows: list[list[Any]]) -> None:
    assert chart_for(table(columns, rows)) is None, why


def test_a_truncated_table_gets_no_chart_as_it_would_show_part_of_the_result() -> None:
    assert chart_for(table(["country", "n"], [["France", 3], ["Japan", 1]], truncated=True)) is None


def test_the_row_bounds_are_inclusive() -> None:
    bars = chart_for(table(["k", "n"], [[f"c{i}", i] for i in range(MAX_CATEGORIES)]))
    lines = chart_for(table(["year", "n"], [[1000 + i, i] for i in range(MAX_TIME_POINTS)]))

    assert bars is not None and bars["mark"]["type"] == "bar"
    assert lines is not None and lines["mark"]["type"] == "line"
