"""How events are written in a stream entry (a JSON list of events per batch) and read back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from dataagent.domain.events import RunEvent
from dataagent.domain.inputs import printable_value

log = logging.getLogger("dataagent.redis")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_event(event: RunEvent) -> dict[str, Any]:
    # the time in whole microseconds: every process shows the event with the very same timestamp
    return {"t": event.event_type, "d": event.data, "r": event.run_id, "s": event.seq,
            "us": (event.timestamp - _EPOCH) // _MICROSECOND}


def encode_events(events: list[RunEvent]) -> bytes:
    """A batch of events as the JSON of a stream entry; never raises (bad text or values are replaced)."""
    batch = [encode_event(e) for e in events]
    try:
        return orjson.dumps(batch)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate, too deep, an integer beyond 64 bits
        log.warning("events could not be encoded as they are; bad text or values replaced")
        return orjson.dumps(printable_value(batch), default=str)


def decode_event(session_id: str, raw: dict[str, Any]) -> RunEvent:
    return RunEvent(raw["t"], raw["d"], session_id, raw["r"], raw["s"], _EPOCH + timedelta(microseconds=raw["us"]))


def decode_entries(session_id: str, entries: list[Any]) -> list[RunEvent]:
    """The events of stream entries as XRANGE/XREAD return them: (id, {b"e": batch, ...})."""
    return [decode_event(session_id, raw) for _, fields in entries for raw in orjson.loads(fields[b"e"])]
