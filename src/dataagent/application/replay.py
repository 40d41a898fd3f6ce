"""The replay rule, one for every transport: which held events a resuming client gets, and whether that is all."""

from __future__ import annotations

import time

from dataagent.domain.events import RunEvent


def floor_seq() -> int:
    """The clock-based lowest seq a new numbering may start above.

    A numbering that starts afresh (a new process, a forgotten session, a Redis that lost its counter) starts at
    (unix time in ms) * 1000, so it never reuses a value unless the previous one sustained more than 1000 events
    per millisecond in that session.
    """
    return int(time.time() * 1000) * 1000


def replay_rule(
    held: list[RunEvent], after_seq: int, last: int, floor: int | None
) -> tuple[list[RunEvent], bool]:
    """The events to replay after `after_seq`, and True; or none and False when some of them are gone.

    `held`: the events the log still holds numbered above `after_seq`, ascending (when `after_seq` is 0: all it
    holds). `last`: the last seq known to be issued; events after the held ones reach a subscriber live.
    `floor`: the seq the log's present numbering started above, when it still holds every event since; None when
    some were evicted (or it cannot tell). `after_seq` 0 means "everything you still hold": recovered when none
    was evicted. Otherwise the held events must follow `after_seq` without a gap; a gap (evicted events, a seq
    from an earlier life of the session or from before a restart) replays nothing: the client reloads history.
    """
    if after_seq == 0:
        if floor is None:
            return [], False
        after_seq = floor
    if after_seq > last:
        return [], False  # a seq never issued here: from before a restart or a drop
    if (held[0].seq != after_seq + 1) if held else (after_seq != last):
        return [], False
    return held, True
