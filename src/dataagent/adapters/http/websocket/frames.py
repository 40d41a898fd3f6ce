"""The socket's frames: outgoing events and local frames encoded, incoming client frames parsed (PROTOCOL.md)."""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dataagent.adapters.http.inputs import dumps, parse_json
from dataagent.adapters.http.schemas import event_dict, iso
from dataagent.domain.errors import InvalidInputError
from dataagent.domain.events import RunEvent


def encode(event: RunEvent) -> str:
    """The event's JSON frame, encoded once and shared by every socket that sends it."""
    if event.wire is None:
        event.wire = dumps(event_dict(event)).decode()
    return event.wire


def local_frame(session_id: str, event_type: str, data: dict[str, Any], run_id: str | None = None) -> str:
    """A frame for one socket only (connected, pong, errors about its own frames): it carries no seq."""
    return dumps({
        "event_type": event_type, "data": data, "timestamp": iso(datetime.now(UTC)),
        "session_id": session_id, "run_id": run_id,
    }).decode()


def error_frame(
    session_id: str, code: str, message: str, recoverable: bool = True, details: Mapping[str, Any] | None = None,
) -> str:
    data: dict[str, Any] = {"error_code": code, "message": message, "recoverable": recoverable}
    if details:
        data["details"] = dict(details)
    return local_frame(session_id, "error", data)


def parse_frame(raw: str) -> tuple[object, object]:
    """A client frame's `type` and `payload` (not checked here); InvalidInputError if it is not JSON."""
    try:
        frame = parse_json(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"frame is not valid JSON: {exc.msg}") from exc
    if not isinstance(frame, dict):
        return None, None
    return frame.get("type"), frame.get("payload", {})


def parse_after_seq(raw: str | None) -> tuple[int | None, bool]:
    """The URL's `after_seq`: (the seq or None, whether it was given but not an integer)."""
    if raw is None:
        return None, False
    try:
        return int(raw), False
    except ValueError:
        return None, True


def frame_text(message: Mapping[str, Any]) -> str:
    """The text of a received ASGI WebSocket message (a binary frame read as UTF-8)."""
    raw = message.get("text")
    if raw is None:
        raw = (message.get("bytes") or b"").decode("utf-8", "replace")
    return str(raw)
