"""Valid text and bounded JSON values (domain/inputs.py), as properties."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataagent.domain.errors import InvalidInputError
from dataagent.domain.inputs import JsonLimits, TextJoiner, json_depth, printable_value, valid_text

any_text = st.text(st.characters(codec=None, exclude_categories=()))  # surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=30,
)


@given(any_text)
def test_valid_text_always_encodes_and_keeps_valid_text_as_is(text: str) -> None:
    out = valid_text(text)
    out.encode("utf-8")
    if "\ufffd" not in out:
        assert out == text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


@given(st.lists(any_text, max_size=8))
def test_a_text_stream_joins_pairs_split_across_chunks_and_equals_the_whole_text_made_valid(chunks: list[str]) -> None:
    joiner = TextJoiner()
    streamed = "".join(joiner.feed(c) for c in chunks) + joiner.flush()
    assert streamed == valid_text("".join(chunks))


def test_an_emoji_split_in_two_chunks_arrives_whole_and_a_lone_surrogate_is_replaced() -> None:
    joiner = TextJoiner()
    assert [joiner.feed("a\ud83d"), joiner.feed("\ude00b"), joiner.feed("\ud800"), joiner.flush()] == \
        ["a", "\U0001f600b", "", "\ufffd"]


@given(json_values)
def test_printable_values_always_encode(value: object) -> None:
    orjson.dumps(printable_value(value))


@given(json_values)
def test_a_checked_value_is_refused_or_encodes_as_json_within_the_bounds(value: object) -> None:
    limits = JsonLimits(max_depth=3, max_bytes=500)
    try:
        checked = limits.check(value, "metadata")
    except InvalidInputError:
        return
    encoded = orjson.dumps(checked)
    assert json_depth(checked) <= 3 and len(encoded) <= 500
    assert all(math.isfinite(x) for x in _floats(json.loads(encoded)))


def _floats(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 2**64, -(2**63) - 1])
def test_non_finite_and_unbounded_numbers_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        JsonLimits().check({"a": [bad]}, "metadata")


def test_depth_is_measured_without_recursion() -> None:
    value: list[object] = []
    for _ in range(100_000):
        value = [value]
    assert json_depth(value) == 100_001
    with pytest.raises(InvalidInputError, match="deeper than 16"):
        JsonLimits().check(value, "metadata")
