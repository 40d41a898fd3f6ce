"""The replay rule on its own (application/replay.py): the one function every transport's replay goes through."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataagent.application.replay import replay_rule
from dataagent.domain.events import RunEvent

FLOOR = 1000


def held(first: int, last: int) -> list[RunEvent]:
    return [RunEvent("text", {}, "s", "r", seq, datetime.now(UTC)) for seq in range(first, last + 1)]


@pytest.mark.parametrize(("after", "first_held", "expected"), [
    (0, FLOOR + 1, (FLOOR + 1, True)),     # 0: everything held, nothing evicted
    (0, FLOOR + 3, (None, False)),         # 0 after an eviction
    (FLOOR, FLOOR + 1, (FLOOR + 1, True)),
    (FLOOR + 5, FLOOR + 6, (FLOOR + 6, True)),
    (FLOOR + 4, FLOOR + 6, (None, False)),  # the one event after it is gone
    (FLOOR - 7, FLOOR + 1, (None, False)),  # from an earlier life or before a restart
])
def test_held_events_must_follow_after_seq_without_a_gap(
    after: int, first_held: int, expected: tuple[int | None, bool],
) -> None:
    events = [e for e in held(first_held, FLOOR + 10) if e.seq > after]
    replayed, recovered = replay_rule(events, after, FLOOR + 10, FLOOR)
    assert (replayed[0].seq if replayed else None, recovered) == expected
    assert replayed == (events if recovered else [])


def test_nothing_held_after_it_is_recovered_only_at_the_last_seq() -> None:
    assert replay_rule([], FLOOR + 10, FLOOR + 10, FLOOR) == ([], True)
    assert replay_rule([], FLOOR + 9, FLOOR + 10, FLOOR) == ([], False)
    assert replay_rule([], FLOOR + 11, FLOOR + 10, FLOOR) == ([], False)  # never issued
    assert replay_rule([], 0, FLOOR, FLOOR) == ([], True)  # a session with no event yet
    assert replay_rule([], 0, FLOOR, None) == ([], False)  # a log that cannot vouch for its start
