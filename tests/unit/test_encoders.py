"""Encoding an event never raises inside a writer: the WebSocket frame, the Redis stream entry, a REST body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from dataagent.adapters.http.inputs import SafeJSONResponse, parse_json
from dataagent.adapters.http.websocket import encode
from dataagent.adapters.redis.codec import decode_event, encode_events
from dataagent.domain.events import RunEvent


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


BAD_DATA = [{"content": "a\ud800b"}, {"\udc00key": 1}, {"big": 2**70}, {"nan": float("nan")}, {"deep": deep(300)}]


def event(data: dict[str, Any]) -> RunEvent:
    return RunEvent("text", data, "s1", "r1", 7, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("data", BAD_DATA)
def test_a_websocket_frame_of_bad_data_is_written_with_the_bad_parts_replaced(data: dict[str, Any]) -> None:
    frame = orjson.loads(encode(event(data)))
    assert frame["event_type"] == "text" and frame["seq"] == 7


@pytest.mark.parametrize("data", BAD_DATA)
def test_a_redis_stream_entry_of_bad_data_is_written_and_read_back(data: dict[str, Any]) -> None:
    [raw] = orjson.loads(encode_events([event(data)]))
    assert decode_event("s1", raw).seq == 7


def test_a_lone_surrogate_becomes_a_replacement_character() -> None:
    assert orjson.loads(encode(event({"content": "a\ud800b"})))["data"]["content"] == "a\ufffdb"
    assert orjson.loads(SafeJSONResponse({"k\ud800": "v"}).body) == {"k\ufffd": "v"}


def test_parsing_replaces_lone_surrogates_and_joins_escaped_pairs() -> None:
    assert parse_json(b'{"a": "\\ud800", "b": "\\ud83d\\ude00"}') == {"a": "\ufffd", "b": "\U0001f600"}


def test_parsing_refuses_integers_beyond_64_bits_and_nesting_past_the_bound() -> None:
    with pytest.raises(ValueError):
        parse_json(b'{"a": [NaN, 18446744073709551616]}')  # the lenient path (NaN)
    with pytest.raises(ValueError):
        parse_json(b"[" * 65 + b"]" * 65)
    assert parse_json(b"[" * 64 + b"]" * 64)
