"""Client JSON in (REST bodies, WebSocket frames) and JSON out, made safe at the edge (PROTOCOL.md, limits).

In: any nesting depth, lone surrogates, NaN or huge integers parse without a RecursionError or a 500; text is
made valid (U+FFFD for a lone surrogate) and a value nested deeper than `MAX_PARSE_DEPTH` is refused. The use
cases then bound metadata and decision args precisely (`JsonLimits`). Out: encoding never raises.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from dataagent.domain.inputs import INT_MAX, INT_MIN, clean_value, json_depth, printable_value

log = logging.getLogger("dataagent.http")

MAX_PARSE_DEPTH = 64  # a whole body or frame; the bounded values inside it are at most JsonLimits.max_depth deep


def parse_json(data: bytes | str) -> Any:
    """The decoded value with valid text; json.JSONDecodeError for anything that is not acceptable JSON."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        value = _lenient(data)  # lone surrogate escapes, NaN (refused where it matters), or not JSON at all
    if json_depth(value) > MAX_PARSE_DEPTH:
        raise json.JSONDecodeError(f"nested deeper than {MAX_PARSE_DEPTH} levels", _text(data), 0)
    return clean_value(value)


def _lenient(data: bytes | str) -> Any:
    try:
        return json.loads(data, parse_int=_int64)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # bad UTF-8, too many digits, nesting past the C stack
        raise json.JSONDecodeError(type(exc).__name__, _text(data), 0) from None


def _int64(digits: str) -> int:
    value = int(digits)
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError("an integer beyond 64 bits")
    return value


def _text(data: bytes | str) -> str:
    return data if isinstance(data, str) else data[:200].decode("utf-8", "replace")


def dumps(value: Any) -> bytes:
    """JSON bytes of `value`; never raises (bad text replaced, deep or odd values made printable)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: surrogates, recursion, integers beyond 64 bits, odd types
        log.warning("a value could not be encoded as is; bad text or values replaced")
        return orjson.dumps(printable_value(value), default=str)


class SafeJSONResponse(JSONResponse):
    """The JSON response of every route and error: orjson, with `dumps`' fallback."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class EdgeRoute(APIRoute):
    """A route whose JSON body is read by `parse_json` and whose JSON answer is written by `dumps`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if isinstance(kwargs.get("response_class"), DefaultPlaceholder):
            kwargs["response_class"] = SafeJSONResponse
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return handle
