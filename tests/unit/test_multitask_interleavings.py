"""Double-texting through the application layer: over random interleavings of chats (with each strategy) and
cancels, every run ends with exactly one `done` and the history holds each admitted question once, in order."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from dataagent.application.streams import Subscription
from dataagent.domain.errors import DataAgentError
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.models import MessagePageQuery, Role
from tests.unit.engines import ScriptedEngine, Step
from tests.unit.harness import build_core

plans = st.lists(
    st.tuples(
        st.sampled_from(["reject", "enqueue", "interrupt", "cancel"]),
        st.integers(min_value=0, max_value=3),  # milliseconds before the action
    ),
    min_size=1, max_size=6,
)


async def _scenario(plan: list[tuple[str, int]]) -> None:
    core = build_core(ScriptedEngine([Step("text"), Step("text"), Step("text")], delay_s=0.001))
    watcher = await core.broker.subscribe("s1", None, 100_000)
    admitted: list[tuple[str, str]] = []  # (run_id, question) of every chat the service took
    for n, (action, delay_ms) in enumerate(plan):
        await asyncio.sleep(delay_ms / 1000)  # kept: when the action comes is the generated scenario
        with contextlib.suppress(DataAgentError):
            if action == "cancel":
                await core.chat.cancel("alice", "s1")
            else:
                run = await core.chat.start("alice", f"q{n}", "s1", None, action)
                admitted.append((run.run_id, f"q{n}"))

    async def settled() -> bool:
        return await core.broker.active_run("s1") is None and await core.repo.next_queued_run("s1") is None

    async with asyncio.timeout(10):
        while not await settled():
            await asyncio.sleep(0.005)
    events: list[RunEvent] = [e for e in [*watcher.replayed, *await _drain(watcher)] if isinstance(e, RunEvent)]
    for run_id, _ in admitted:
        dones = [e for e in events if e.run_id == run_id and e.event_type == EventType.DONE]
        assert len(dones) == 1, (run_id, [e.event_type for e in events if e.run_id == run_id])
    if not admitted:  # no chat was taken: the session was never created
        assert await core.repo.get_session("s1") is None
        return
    history = (await core.sessions.messages("alice", "s1", MessagePageQuery(limit=1000))).messages
    asked = [m.content for m in history if m.role == Role.USER]
    assert sorted(asked) == sorted(q for _, q in admitted) and len(set(asked)) == len(asked)
    started = [e.run_id for e in events if e.event_type == EventType.RUN_STARTED]
    by_run = dict(admitted)
    assert asked == [by_run[r] for r in started]  # stored in the order the runs started
    answers = [m for m in history if m.role == Role.ASSISTANT]
    assert len(answers) == len(admitted)
    assert core.runs.active_runs == 0


async def _drain(watcher: Subscription) -> list[object]:
    """What the subscription holds now (everything has been published once the session settled)."""
    out: list[object] = []
    while True:
        try:
            batch = await asyncio.wait_for(watcher.get_batch(), 0.05)
        except TimeoutError:
            return out
        out.extend(batch)


@settings(max_examples=40, deadline=None)
@given(plans)
def test_every_admitted_question_runs_once_in_order_and_ends_with_one_done(plan: list[tuple[str, int]]) -> None:
    asyncio.run(_scenario(plan))
