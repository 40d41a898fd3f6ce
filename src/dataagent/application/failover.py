"""Several processes: close the run of a process that died, storing the answer its watchers were sent."""

from __future__ import annotations

import logging
from typing import Any

from dataagent.application.hub import EventHub
from dataagent.application.ports import Clock, IdGenerator, SessionRepository
from dataagent.application.run_end import error_data
from dataagent.application.transport import FinalEvent
from dataagent.domain.errors import WorkerLostError
from dataagent.domain.events import EventType, RunEvent, done_payload
from dataagent.domain.models import Message, Role, RunStatus

log = logging.getLogger("dataagent.failover")

WORKER_LOST = WorkerLostError.code
WORKER_LOST_MESSAGE = WorkerLostError.default_message


def _text(events: list[RunEvent], run_id: str) -> str:
    return "".join(e.data["content"] for e in events if e.event_type == EventType.TEXT and e.run_id == run_id)


def _tool_calls(events: list[RunEvent], run_id: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in events if e.event_type == EventType.TOOL_CALL and e.run_id == run_id]


class OrphanCloser:
    """Ends a run whose owner died: stores, once and as failed (worker_lost), the text its watchers were sent.

    It publishes the `error`; the broker publishes the returned `done` once the session is free."""

    def __init__(self, repository: SessionRepository, broker: EventHub, clock: Clock, ids: IdGenerator) -> None:
        self._repo = repository
        self._broker = broker
        self._clock = clock
        self._ids = ids

    async def close(self, session_id: str, run_id: str) -> FinalEvent | None:
        session = await self._repo.get_session(session_id)
        if session is None or session.active_run_id != run_id:
            return None  # the owner ended it (only its release was lost), or the session is gone
        state = await self._broker.load_checkpoint(session_id, run_id) or {}
        content, tool_calls = await self._delivered(session_id, run_id, state)
        now = self._clock.now()
        meta: dict[str, Any] = {
            "tool_calls": tool_calls, "token_usage": state.get("token_usage"),
            "reason": WORKER_LOST, "error": {"error_code": WORKER_LOST, "message": WORKER_LOST_MESSAGE},
        }
        message = await self._repo.append_message(
            Message(self._ids.new_id("msg"), session_id, Role.ASSISTANT, content, now, run_id, "failed", meta)
        )
        await self._repo.set_run_state(session_id, active_run_id=None, pending_interrupt=None, touched_at=now)
        self._broker.publish(session_id, run_id, EventType.ERROR.value, error_data(WorkerLostError()))
        log.warning("run %s of session %s: its owner stopped; closed as failed (%s)", run_id, session_id, WORKER_LOST)
        done = done_payload(run_id, RunStatus.FAILED.value, message.message_id, state.get("token_usage"), WORKER_LOST)
        return EventType.DONE.value, done

    async def _delivered(
        self, session_id: str, run_id: str, state: dict[str, Any]
    ) -> tuple[str, list[dict[str, Any]]]:
        """The run's text and tool calls as its watchers were sent them: its events the stream holds, from its
        `run_started` on (what the dead owner never flushed, no watcher elsewhere received either)."""
        events = await self._events_since_start(session_id, run_id, state.get("started_seq"))
        if events is not None:
            return _text(events, run_id), _tool_calls(events, run_id)
        # The stream no longer holds the run's start (evicted past `replay_events`, or Redis lost it): the
        # owner's checkpoint stands in for what it lost, as the prefix, and the held events after the last
        # delta in that checkpoint follow it. Without those, the checkpoint alone (up to lease/3 behind).
        text, tool_calls = str(state.get("text", "")), list(state.get("tool_calls", []))
        seq = state.get("seq")
        if isinstance(seq, int) and seq > 0:
            tail, complete = await self._broker.replay(session_id, seq)
            if complete:
                known = {call.get("tool_call_id") for call in tool_calls}
                later = [call for call in _tool_calls(tail, run_id) if call.get("tool_call_id") not in known]
                return text + _text(tail, run_id), tool_calls + later
        return text, tool_calls

    async def _events_since_start(self, session_id: str, run_id: str, started_seq: Any) -> list[RunEvent] | None:
        """The held events from the run's `run_started` on, or None if the stream no longer has them all."""
        if isinstance(started_seq, int) and started_seq > 0:
            events, complete = await self._broker.replay(session_id, started_seq - 1)
        else:
            # no checkpoint yet (the owner died within lease/3 of the start): find the start as a socket that
            # joins the run does; the session's claim stays the dead run's until this closer has returned
            subscription = await self._broker.subscribe(session_id, None, 1)
            subscription.close()
            events, complete = subscription.replayed, subscription.recovered
        started = bool(events) and events[0].event_type == EventType.RUN_STARTED and events[0].run_id == run_id
        return events if complete and started else None
