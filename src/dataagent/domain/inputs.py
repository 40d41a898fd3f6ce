"""Valid text and bounded JSON values: what the edges make of client and model input (PROTOCOL.md, limits)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from dataagent.domain.errors import InvalidInputError

REPLACEMENT = "\ufffd"
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # what orjson, MySQL's JSON and most clients can hold
_HIGH = ("\ud800", "\udbff")
_CONTROL = re.compile("[\x00-\x1f]")


def valid_text(text: str) -> str:
    """`text` with surrogate pairs joined and every lone surrogate replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


class TextJoiner:
    """Streamed text made valid chunk by chunk: a high surrogate ending a chunk waits for the next one."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        text, self._held = self._held + chunk, ""
        if text and _HIGH[0] <= text[-1] <= _HIGH[1]:
            text, self._held = text[:-1], text[-1]
        return valid_text(text)

    def flush(self) -> str:
        """What is still held at the end of the stream (a lone high surrogate: U+FFFD)."""
        held, self._held = self._held, ""
        return REPLACEMENT if held else ""


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar 0, `{}` 1, `{"a": []}` 2), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def clean_value(value: Any) -> Any:
    """A copy of a decoded JSON value with valid text in every key and string (depth must be bounded first)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): clean_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    return value


def printable_value(value: Any, max_depth: int = 128) -> Any:
    """What an encoder can always write: valid text, string keys, finite numbers, bounded depth ("..." below)."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if INT_MIN <= value <= INT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list | tuple) and max_depth <= 0:
        return "..."
    if isinstance(value, dict):
        return {valid_text(str(k)): printable_value(v, max_depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_value(v, max_depth - 1) for v in value]
    return valid_text(str(value))


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Bounds of every client JSON value (metadata, decision args): nesting depth and encoded size."""

    max_depth: int = 16
    max_bytes: int = 64 * 1024

    def check(self, value: Any, what: str) -> Any:
        """`value` with valid text; InvalidInputError if too deep, too big, or holding a number JSON can't."""
        depth = json_depth(value)
        if depth > self.max_depth:
            raise InvalidInputError(f"{what} is nested deeper than {self.max_depth} levels",
                                    details={"max_depth": self.max_depth})
        size = _encoded_size(value)
        if size > self.max_bytes:
            raise InvalidInputError(f"{what} is larger than {self.max_bytes} bytes as JSON",
                                    details={"max_bytes": self.max_bytes})
        return clean_value(value)


def _encoded_size(value: Any) -> int:
    """About the size of `value` as compact JSON; refuses NaN, infinities and integers beyond 64 bits."""
    size, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            size += 2 + 2 * len(item)
            for key, child in item.items():
                size += _text_size(str(key))
                stack.append(child)
        elif isinstance(item, list):
            size += 2 + len(item)
            stack.extend(item)
        elif isinstance(item, str):
            size += _text_size(item)
        elif isinstance(item, bool) or item is None:
            size += 5
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise InvalidInputError("integers must fit in 64 bits")
            size += 20
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInputError("numbers must be finite (no NaN or Infinity)")
            size += 24
        else:
            raise InvalidInputError(f"unsupported value of type {type(item).__name__}")
    return size


def _text_size(text: str) -> int:
    """Bytes of `text` as a JSON string: quotes, escapes (`\\u001f`: 6 bytes for 1) and UTF-8."""
    escaped = 5 * len(_CONTROL.findall(text)) + text.count('"') + text.count("\\")
    return len(text.encode("utf-8", "surrogatepass")) + 2 + escaped
