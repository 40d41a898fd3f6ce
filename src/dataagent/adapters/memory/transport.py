"""The in-process transport: one process owns every run, so the held events, claims and control stay in memory.

It is an EventLog and RunClaims (application/ports.py) and nothing more: no leases (a run cannot outlive its one
process) and no feed (no other process numbers events).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dataagent.application.hub import EventHub
from dataagent.application.replay import floor_seq
from dataagent.application.transport import ControlHandler, EventLog, Held, RunClaims, RunControl
from dataagent.domain.events import EventType, RunEvent

# A held text delta is kept as a tuple of atoms (seq, run_id, timestamp, content), which CPython's collector
# stops tracking: a server holding a million deltas for replay then pays nothing for them at each GC pass.
_HeldText = tuple[int, str | None, datetime, str]
_Held = RunEvent | _HeldText


def _unhold(session_id: str, item: _Held) -> RunEvent:
    if isinstance(item, RunEvent):
        return item
    seq, run_id, timestamp, content = item
    data = {"content": content, "is_final": False}  # text_delta(), inlined: per held delta
    return RunEvent("text", data, session_id, run_id, seq, timestamp)


def _seq_of(item: _Held) -> int:
    return item.seq if isinstance(item, RunEvent) else item[0]


@dataclass(slots=True)
class _Log:
    floor: int                       # the session's numbering starts above it
    held: deque[_Held]
    run_start: int | None = None     # seq of the last `run_started` held

    @property
    def last(self) -> int:
        return _seq_of(self.held[-1]) if self.held else self.floor

    def holder(self) -> Callable[[RunEvent], None]:
        """The per-event hold, a closure over the deque's append: one attribute lookup less per token."""
        append = self.held.append

        def hold(event: RunEvent) -> None:
            data = event.data
            # is_text_delta(), inlined: per token; see _HeldText
            if event.event_type == "text" and len(data) == 2 and data.get("is_final") is False:
                append((event.seq, event.run_id, event.timestamp, data["content"]))
            else:
                append(event)
                if event.event_type == EventType.RUN_STARTED:
                    self.run_start = event.seq

        return hold


class MemoryTransport(EventLog, RunClaims):
    """Holds the last `replay_events` events of each session for replay, and its one active run."""

    def __init__(self, replay_events: int = 1000) -> None:
        self._replay_events = replay_events
        self._logs: dict[str, _Log] = {}
        self._runs: dict[str, str] = {}  # session_id -> its active run
        self._forgotten_seq = 0  # the highest seq of a log dropped or forgotten: new logs start above it
        self._handler: ControlHandler | None = None

    def _log(self, session_id: str) -> _Log:
        log = self._logs.get(session_id)
        if log is None:
            log = self._logs[session_id] = _Log(
                max(floor_seq(), self._forgotten_seq + 1), deque(maxlen=self._replay_events))
        return log

    # -- EventLog -----------------------------------------------------------------------------------

    def holder(self, session_id: str) -> Callable[[RunEvent], None]:
        return self._log(session_id).holder()

    def known_last(self, session_id: str) -> int:
        return self._log(session_id).last

    async def read(self, session_id: str, after_seq: int | None) -> Held:
        log = self._log(session_id)
        active = self._runs.get(session_id)
        if after_seq is None:
            after_seq = log.run_start - 1 if active is not None and log.run_start is not None else log.last
        held = [_unhold(session_id, e) for e in log.held if _seq_of(e) > after_seq]
        return Held(held, after_seq, log.last, log.floor, active)

    async def last_seq(self, session_id: str) -> int:
        return self._log(session_id).last

    async def drop(self, session_id: str) -> int:
        log = self._logs.pop(session_id, None)
        last = log.last if log is not None else self._forgotten_seq
        base = last + 1
        self._forgotten_seq = max(self._forgotten_seq, base)
        if session_id in self._runs:  # a run that did not stop in time numbers on above `base`
            self._logs[session_id] = _Log(base, deque(maxlen=self._replay_events))
        return base

    def forget(self, session_id: str) -> bool:
        log = self._logs.pop(session_id, None)
        if log is not None:
            self._forgotten_seq = max(self._forgotten_seq, log.last)
        return True

    # -- RunClaims ----------------------------------------------------------------------------------

    async def claim(self, session_id: str, run_id: str) -> int | None:
        if session_id in self._runs:
            return None
        self._runs[session_id] = run_id
        return self._log(session_id).last

    async def release(self, session_id: str, run_id: str) -> None:
        if self._runs.get(session_id) == run_id:
            del self._runs[session_id]

    async def active_run(self, session_id: str) -> str | None:
        return self._runs.get(session_id)

    async def send_control(self, control: RunControl) -> None:
        if self._handler is not None and self._runs.get(control.session_id) == control.run_id:
            await self._handler(control)

    def on_control(self, handler: ControlHandler) -> None:
        self._handler = handler


def in_memory_hub(replay_events: int = 1000, replay_ttl_s: float = 600.0) -> EventHub:
    """The event hub of one process: events held for replay `replay_events` a session, forgotten once idle
    `replay_ttl_s` with nobody watching and no run."""
    transport = MemoryTransport(replay_events)
    return EventHub(transport, transport, idle_s=replay_ttl_s)
