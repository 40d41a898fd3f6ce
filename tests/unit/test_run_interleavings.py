"""Every run ends exactly once, over random interleavings of output, approvals, decisions, cancels, timeouts."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dataagent.application.streams import Subscription
from dataagent.domain.errors import DataAgentError
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.models import MessagePageQuery
from tests.unit.engines import ScriptedEngine, Step
from tests.unit.harness import Core, build_core

steps = st.lists(
    st.sampled_from([Step("text"), Step("tool"), Step("approval"), Step("fail")]), min_size=0, max_size=6
)
actions = st.lists(
    st.tuples(
        st.sampled_from(["cancel", "approve", "reject", "edit", "decide_twice", "wait"]),
        st.integers(min_value=0, max_value=4),  # milliseconds before the action
    ),
    max_size=6,
)


async def _scenario(script: list[Step], plan: list[tuple[str, int]]) -> None:
    engine = ScriptedEngine(script, delay_s=0.001)
    core = build_core(engine, hitl_timeout_s=0.03)
    watcher = await core.broker.subscribe("s1", None, 100_000)
    run = await core.chat.start("alice", "question", "s1")
    for action, delay_ms in plan:
        await asyncio.sleep(delay_ms / 1000)  # kept: when the action comes is the generated scenario
        await _act(core, action)
    await asyncio.wait_for(core.runs.wait_finished(run.run_id), 5)
    events = [e for e in watcher.replayed] + await _drain(watcher)
    _check(events, run.run_id)
    history = (await core.sessions.messages("alice", "s1", MessagePageQuery(limit=1000))).messages
    answers = [m for m in history if m.role == "assistant"]
    assert len(answers) == 1
    done = events[-1]
    assert answers[0].status == done.data["status"] and answers[0].message_id == done.data["message_id"]
    assert answers[0].content == "".join(e.data["content"] for e in events if e.event_type == "text")
    session = await core.sessions.get("alice", "s1")
    assert session.active_run_id is None and session.pending_interrupt is None
    assert await core.broker.active_run("s1") is None
    assert core.runs.active_runs == 0


async def _act(core: Core, action: str) -> None:
    with contextlib.suppress(DataAgentError):
        if action == "cancel":
            await core.chat.cancel("alice", "s1")
        elif action in ("approve", "reject", "edit", "decide_twice"):
            kind = "approve" if action == "decide_twice" else action
            decision = {"type": kind, "args": {"sql": "SELECT 42"}} if kind == "edit" else {"type": kind}
            await core.chat.decide("alice", "s1", None, [decision])
            if action == "decide_twice":
                await core.chat.decide("alice", "s1", None, [decision])


async def _drain(watcher: Subscription) -> list[RunEvent]:
    out: list[RunEvent] = []
    while True:
        try:
            batch = await asyncio.wait_for(watcher.get_batch(), 0.05)
        except TimeoutError:
            return out
        out.extend(batch)


def _check(events: list[RunEvent], run_id: str) -> None:
    mine = [e for e in events if e.run_id == run_id]
    kinds = [e.event_type for e in mine]
    assert kinds[0] == EventType.RUN_STARTED
    assert kinds.count(EventType.DONE) == 1 and kinds[-1] == EventType.DONE
    seqs = [e.seq for e in mine]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    done = mine[-1].data
    assert done["status"] in ("completed", "cancelled", "failed")
    assert done["cancelled"] == (done["status"] == "cancelled")
    if done["status"] == "failed":
        assert kinds[-2] == EventType.ERROR and mine[-2].data["recoverable"] is False
        assert "secret internals" not in mine[-2].data["message"]
    # every published approval request is resolved exactly once
    hitl = [e.data["interrupt_id"] for e in mine if e.event_type == EventType.HITL]
    resolved = [e.data["interrupt_id"] for e in mine if e.event_type == EventType.HITL_RESOLVED]
    assert sorted(hitl) == sorted(resolved)
    if done["status"] == "cancelled":
        # after the cancel took effect: at most a hitl_resolved (source cancel), then done
        tail = mine[:-1]
        last_resolved = [e for e in tail if e.event_type == EventType.HITL_RESOLVED]
        if last_resolved and last_resolved[-1].data["decision"]["source"] == "cancel":
            assert tail[-1].event_type == EventType.HITL_RESOLVED


@settings(max_examples=120)
@given(script=steps, plan=actions)
def test_every_run_ends_exactly_once_with_its_answer_persisted_once(
    script: list[Step], plan: list[tuple[str, int]]
) -> None:
    asyncio.run(_scenario(script, plan))
