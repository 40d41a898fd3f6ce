"""The process that closes a dead owner's run stores the text the run's watchers were sent (issue 16, item 7):
rebuilt from the events the broker holds, the owner's checkpoint only for what the stream no longer has."""

from __future__ import annotations

import asyncio
from typing import Any

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.adapters.memory.transport import MemoryTransport
from dataagent.adapters.system import SystemClock, UuidIdGenerator
from dataagent.application.approvals import LiveRun
from dataagent.application.chat import ChatService
from dataagent.application.failover import OrphanCloser
from dataagent.application.hub import EventHub
from dataagent.application.leases import checkpoint
from dataagent.application.runs import RunManager
from dataagent.application.streams import Subscription
from dataagent.application.transport import FinalEvent
from dataagent.domain.events import EventType, RunEvent
from dataagent.domain.models import ChatRun, Message, MessagePageQuery, Role, RunState, Session
from tests.unit.engines import ScriptedEngine, Step

SID, RUN = "s1", "run_1"
clock, ids = SystemClock(), UuidIdGenerator()


class LeasingBroker(EventHub):
    """The hub on the memory transport with the leases of a shared one: owners renew every `interval` and their
    checkpoints are kept for the closer, as the Redis transport does."""

    def __init__(self, interval: float | None = None, replay_events: int = 1000) -> None:
        transport = MemoryTransport(replay_events)
        super().__init__(transport, transport)
        self.interval = interval
        self.saved: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def lease_renew_interval_s(self) -> float | None:
        return self.interval

    async def renew_runs(self, checkpoints: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.saved.update(checkpoints)

    async def load_checkpoint(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        return self.saved.get((session_id, run_id))


async def owned_run(broker: LeasingBroker, repo: InMemorySessionRepository) -> tuple[LiveRun, Subscription]:
    """A run of another process, claimed and started, with a watcher that joined before its start."""
    now = clock.now()
    await repo.get_or_create_session(Session(SID, "alice", "t", now, now))
    await repo.append_message(Message("msg_q", SID, Role.USER, "q", now, RUN), RunState(active_run_id=RUN))
    assert await broker.claim_run(SID, RUN)
    watcher = await broker.subscribe(SID, None, 10_000)
    live = LiveRun(ChatRun(RUN, SID, "q", now))
    live.started_seq = broker.publish(SID, RUN, EventType.RUN_STARTED, {"run_id": RUN, "message_id": "msg_q"}).seq
    return live, watcher


def say(broker: LeasingBroker, live: LiveRun, *pieces: str) -> None:
    """The owner's hot path: each delta kept and published."""
    for piece in pieces:
        live.run.text.append(piece)
        broker.publish(SID, RUN, EventType.TEXT, {"content": piece, "is_final": False})


async def received(watcher: Subscription) -> list[RunEvent]:
    """What the watcher was sent so far: one batch holds it all (the events were published before)."""
    batch = await asyncio.wait_for(watcher.get_batch(), 5)
    return list(watcher.replayed) + [e for e in batch if isinstance(e, RunEvent)]


def text_of(events: list[RunEvent]) -> str:
    return "".join(e.data["content"] for e in events if e.event_type == EventType.TEXT)


async def close_and_load(broker: LeasingBroker, repo: InMemorySessionRepository) -> tuple[Message, FinalEvent]:
    final = await OrphanCloser(repo, broker, clock, ids).close(SID, RUN)
    assert final is not None
    answers = [m for m in (await repo.list_messages(SID, MessagePageQuery(limit=100))).messages
               if m.role == Role.ASSISTANT]
    assert len(answers) == 1
    return answers[0], final


async def test_with_no_checkpoint_yet_the_stored_answer_is_the_text_and_tool_calls_watchers_were_sent() -> None:
    broker, repo = LeasingBroker(), InMemorySessionRepository()
    live, watcher = await owned_run(broker, repo)
    say(broker, live, "This is ", "the DataAgent ")
    call = {"tool_call_id": "call_1", "tool_name": "run_sql", "tool_args": {"sql": "select 1"}}
    broker.publish(SID, RUN, EventType.TOOL_CALL, call)
    say(broker, live, "demo ")
    answer, (kind, done) = await close_and_load(broker, repo)
    assert answer.content == text_of(await received(watcher)) == "This is the DataAgent demo "
    assert answer.metadata["tool_calls"] == [call] and answer.metadata["reason"] == "worker_lost"
    assert kind == EventType.DONE and done["message_id"] == answer.message_id and done["status"] == "failed"


async def test_a_checkpoint_older_than_the_stream_does_not_cut_the_stored_answer_short() -> None:
    broker, repo = LeasingBroker(), InMemorySessionRepository()
    live, watcher = await owned_run(broker, repo)
    say(broker, live, "one ", "two ")
    broker.saved[(SID, RUN)] = checkpoint(live, broker.issued(SID))
    say(broker, live, "three ", "four ")
    answer, _ = await close_and_load(broker, repo)
    assert answer.content == text_of(await received(watcher)) == "one two three four "


async def test_when_the_stream_lost_the_runs_start_the_checkpoint_is_the_prefix_of_the_held_tail() -> None:
    broker, repo = LeasingBroker(replay_events=5), InMemorySessionRepository()
    live, watcher = await owned_run(broker, repo)
    say(broker, live, *[f"w{i} " for i in range(7)])
    broker.saved[(SID, RUN)] = checkpoint(live, broker.issued(SID))
    say(broker, live, "w7 ", "w8 ")  # the stream holds w4..w8 only: w0..w3 and the run's start are evicted
    answer, _ = await close_and_load(broker, repo)
    assert answer.content == text_of(await received(watcher)) == "".join(f"w{i} " for i in range(9))


async def test_when_the_stream_holds_nothing_of_the_run_the_checkpoint_is_the_answer() -> None:
    broker, repo = LeasingBroker(replay_events=2), InMemorySessionRepository()
    live, _ = await owned_run(broker, repo)
    say(broker, live, "kept ")
    broker.saved[(SID, RUN)] = checkpoint(live, broker.issued(SID))
    say(broker, live, "a ", "b ", "c ")  # the checkpoint's last delta is evicted too: its tail is unknown
    answer, _ = await close_and_load(broker, repo)
    assert answer.content == "kept "


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_an_owner_cut_off_mid_answer_is_closed_with_its_streamed_text_and_does_not_store_it_again() -> None:
    broker, repo = LeasingBroker(interval=0.01), InMemorySessionRepository()
    owner = RunManager(repo, broker, ScriptedEngine([Step("text"), Step("tool"), Step("text"), Step("sleep", "30")]),
                       clock, ids)
    owner.attach()
    watcher = await broker.subscribe(SID, None, 10_000)
    run = await ChatService(repo, broker, owner, clock, ids).start("alice", "question", SID)
    await wait_for(lambda: "t2" in broker.saved.get((SID, run.run_id), {}).get("text", ""))
    saved = broker.saved[(SID, run.run_id)]
    events = await received(watcher)
    assert events[0].seq == saved["started_seq"] and events[0].event_type == EventType.RUN_STARTED
    assert text_of([e for e in events if e.seq <= saved["seq"]]) == saved["text"]

    final = await OrphanCloser(repo, broker, clock, ids).close(SID, run.run_id)  # the owner counts as dead
    assert final is not None
    await owner.shutdown()  # it was only cut off: it ends, and finds its run closed elsewhere
    answers = [m for m in (await repo.list_messages(SID, MessagePageQuery(limit=100))).messages
               if m.role == Role.ASSISTANT]
    assert [(a.content, a.metadata["reason"]) for a in answers] == [("t0 t2 ", "worker_lost")]
    assert answers[0].content == text_of(events)
    assert [c["tool_call_id"] for c in answers[0].metadata["tool_calls"]] == ["call_1"]
