"""Charts the model proposes: an allow-list of marks and encodings of the latest result's columns; the spec is
always built by our builder, and anything else is refused with a message for the model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataagent.domain.chart_proposals import ARGUMENTS, MARKS, ChartProposalError, chart_from_proposal, describe
from tests.unit.test_chart_properties import assert_well_made, strings_in

RESULT = {
    "columns": ["country", "n", "revenue", "first.order"],
    "rows": [["France", 3, 10.5, "2024-01-02"], ["Japan", 1, 4.0, "2024-02-03"], ["China", 5, 7.25, "2024-01-09"]],
    "row_count": 3, "truncated": False,
}


def refusal(args: dict[str, Any], table: dict[str, Any] | None = RESULT) -> str:
    with pytest.raises(ChartProposalError) as refused:
        chart_from_proposal(args, table)
    return str(refused.value)


def test_a_bar_proposal_becomes_our_spec_over_the_results_rows() -> None:
    spec = chart_from_proposal({"mark": "bar", "x": "country", "y": "revenue", "title": "Revenue"}, RESULT)

    assert spec["mark"] == {"type": "bar"} and spec["title"] == "Revenue"
    assert spec["encoding"]["x"]["field"] == "country" and spec["encoding"]["y"]["field"] == "revenue"
    assert spec["data"]["values"][0] == {"country": "France", "n": 3, "revenue": 10.5, "first.order": "2024-01-02"}
    assert_well_made({k: v for k, v in spec.items() if k != "title"}, RESULT)


def test_a_pie_takes_theta_and_color() -> None:
    spec = chart_from_proposal({"mark": "arc", "theta": "n", "color": "country"}, RESULT)

    assert spec["mark"] == {"type": "arc"}
    assert spec["encoding"]["theta"]["type"] == "quantitative" and spec["encoding"]["color"]["type"] == "nominal"
    assert describe(spec) == "The chart is shown to the user under the result: a arc chart (color=country, theta=n)."


def test_a_line_over_a_dotted_date_column_escapes_the_field() -> None:
    spec = chart_from_proposal({"mark": "line", "x": "first.order", "y": "n", "color": None}, RESULT)

    assert spec["encoding"]["x"] == {"field": "first\\.order", "type": "temporal", "title": "first.order"}


@pytest.mark.parametrize("args", [
    {"mark": "point", "x": "revenue", "y": "n", "color": "country"}, {"mark": "area", "x": "first.order", "y": "n"},
    {"mark": "line", "x": "country", "y": "revenue"}, {"mark": "bar", "x": "country", "y": "n", "color": "n"},
])
def test_every_allowed_mark_is_accepted_and_valid(args: dict[str, Any]) -> None:
    spec = chart_from_proposal(args, RESULT)

    assert spec["mark"]["type"] == args["mark"]
    assert_well_made(spec, RESULT)


@pytest.mark.parametrize(("args", "says"), [
    ({"mark": "rect", "x": "country", "y": "n"}, "Unknown mark 'rect': use one of bar, line, point, area, arc."),
    ({"mark": {"type": "bar"}, "x": "country", "y": "n"}, "Unknown mark a non-string mark"),
    ({"mark": "bar", "x": "country", "y": "n", "data": {"url": "https://evil.example/x.json"}}, "URLs are not allowed"),
    ({"mark": "bar", "x": "country", "y": "n", "title": "see http://evil.example"}, "URLs are not allowed"),
    ({"mark": "bar", "x": "javascript:alert(1)", "y": "n"}, "URLs are not allowed"),
    ({"mark": "bar", "x": "country", "y": "n", "transform": [{"calculate": "datum.n * 2", "as": "m"}]},
     "Unknown argument(s) 'transform': the only arguments are mark, x, y, color, theta, title."),
    ({"mark": "bar", "x": "country", "y": "n", "filter": "datum.n > 1"}, "Unknown argument(s) 'filter'"),
    ({"mark": "bar", "x": "country", "y": "datum.n * 2"}, "y looks like an expression"),
    ({"mark": "bar", "x": "country", "y": "sqrt(n)"}, "y looks like an expression"),
    ({"mark": "bar", "x": "country", "y": "m"}, "Unknown column 'm' for y: the latest result's columns are country, n"),
    ({"mark": "bar", "x": {"field": "country"}, "y": "n"}, "x must name a column of the latest result, as a string."),
    ({"mark": "bar", "x": "country"}, "A bar chart takes x and y (and optionally color); missing: y."),
    ({"mark": "bar", "x": "country", "y": "n", "theta": "n"}, "not allowed: theta"),
    ({"mark": "arc", "theta": "n"}, "A arc chart takes theta and color; missing: color."),
    ({"mark": "bar", "x": "n", "y": "country"}, "y must be a numeric column; 'country' is not."),
    ({"mark": "bar", "x": "country", "y": "n", "title": "<img src=x onerror=alert(1)>"}, "looks like an expression"),
    ({"mark": "bar", "x": "country", "y": "n", "title": "{{datum.n}}"}, "looks like an expression or markup"),
    ({"mark": "bar", "x": "country", "y": "n", "title": "x" * 121}, "at most 120 characters"),
])
def test_these_proposals_are_refused_with_a_reason_for_the_model(args: dict[str, Any], says: str) -> None:
    assert says in refusal(args)


def test_there_is_nothing_to_chart_before_a_query_ran() -> None:
    assert refusal({"mark": "bar", "x": "country", "y": "n"}, None).startswith("There is no result to chart yet")


def test_a_result_without_rows_is_not_charted() -> None:
    empty = {**RESULT, "rows": [], "row_count": 0}

    assert refusal({"mark": "bar", "x": "country", "y": "n"}, empty).startswith("The latest result cannot be charted")


JUNK = st.one_of(st.none(), st.integers(), st.text(max_size=12), st.sampled_from(
    ["datum.n", "https://x.test/a.json", "calculate", "country", "n", "revenue", "first.order", *MARKS]))
ANY_PROPOSAL = st.dictionaries(
    st.one_of(st.sampled_from([*ARGUMENTS, "data", "transform", "url", "$schema"]), st.text(max_size=5)),
    st.one_of(JUNK, st.lists(JUNK, max_size=2), st.dictionaries(st.text(max_size=4), JUNK, max_size=2)),
    max_size=6,
)
PLAUSIBLE = st.fixed_dictionaries({"mark": st.sampled_from(MARKS)}, optional={
    channel: st.sampled_from([*RESULT["columns"], None]) for channel in ("x", "y", "color", "theta")
} | {"title": st.one_of(st.none(), st.text(max_size=30))})
PROPOSALS = st.one_of(ANY_PROPOSAL, PLAUSIBLE)


@settings(max_examples=300)
@given(PROPOSALS)
def test_any_proposal_is_refused_or_becomes_a_valid_spec_with_nothing_of_the_model_but_names_and_title(
    args: dict[str, Any],
) -> None:
    try:
        spec = chart_from_proposal(args, RESULT)
    except ChartProposalError as exc:
        assert str(exc)
        return
    assert set(args) <= set(ARGUMENTS) and args["mark"] in MARKS
    assert spec["mark"]["type"] == args["mark"]
    assert spec.pop("title", None) == ((args.get("title") or "").strip() or None)
    assert_well_made(spec, RESULT)
    own = set(strings_in({k: v for k, v in spec.items() if k != "data"}))
    # the title is the model's by design (checked above); a title such as "x" may equal a key of the spec
    from_model = {v for k, v in args.items() if k != "title" and isinstance(v, str)} - set(RESULT["columns"]) - set(
        MARKS)
    assert not own & from_model
