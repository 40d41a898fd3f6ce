"""Per-key limits in the core, on the real in-memory adapters: the rate of new questions (a moving window of the
`limits` library) and the answers a key has running at once (a slot per run, from its start to its end)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import pytest

from dataagent.adapters.memory.slots import InMemoryRunSlots
from dataagent.adapters.ratelimit.window import MovingWindowRate, memory_storage
from dataagent.application.limits import Limits, who_of
from dataagent.application.ports import RunContext
from dataagent.domain.errors import RateLimitedError
from dataagent.domain.events import AgentOutput, RunEvent, TextDelta
from dataagent.domain.models import MessagePageQuery, Role
from dataagent.entrypoints.settings import SettingsError, load_settings
from tests.support.polling import eventually
from tests.unit.harness import Core, build_core


class GatedEngine:
    """Answers `a`, then waits for its gate (a question `fail` fails instead): runs that last as long as a test
    wants."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        yield TextDelta("a")
        if ctx.question == "fail":
            raise RuntimeError("scripted failure")
        await self.gate.wait()
        yield TextDelta("b")

    async def close(self) -> None:
        pass


def rated(limit: str) -> Limits:
    return Limits(rate=MovingWindowRate(memory_storage(), limit))


def slotted(max_runs: int) -> Limits:
    return Limits(slots=InMemoryRunSlots(max_runs))


async def ended(core: Core, sid: str) -> bool:
    session = await core.repo.get_session(sid)
    return session is not None and session.active_run_id is None


async def test_the_question_past_the_rate_is_refused_with_when_to_retry_and_nothing_stored() -> None:
    engine = GatedEngine()
    engine.gate.set()
    core = build_core(engine, limits=rated("3/minute"))
    for n in range(3):
        await core.chat.chat("alice", "hi", f"s{n}")
    with pytest.raises(RateLimitedError) as refused:
        await core.chat.chat("alice", "hi", "s3")
    details = refused.value.details or {}
    assert details["kind"] == "questions" and details["limit"] == 3 and details["remaining"] == 0
    assert 1 <= details["reset"] <= 60 and details["retry_after"] == details["reset"]
    assert await core.repo.get_session("s3") is None  # refused before its session was opened
    assert (await core.chat.chat("bob", "hi", "b0")).status == "completed"  # another key has its own window


async def test_the_window_admits_again_once_its_oldest_question_is_older_than_the_window() -> None:
    engine = GatedEngine()
    engine.gate.set()
    core = build_core(engine, limits=rated("2/1second"))
    first = time.monotonic()
    await core.chat.chat("alice", "one", "s")
    await core.chat.chat("alice", "two", "s")
    with pytest.raises(RateLimitedError):
        await core.chat.chat("alice", "three", "s")

    async def admitted() -> bool:
        try:
            await core.chat.chat("alice", "three", "s")
        except RateLimitedError:
            return False
        return True

    await eventually(admitted, timeout=3, interval=0.05, what="the window's reset")
    assert time.monotonic() - first >= 0.95  # not before the window's end: refusals were not counted either


async def test_a_run_holds_a_slot_of_its_key_until_it_completes() -> None:
    engine = GatedEngine()
    core = build_core(engine, limits=slotted(1))
    await core.chat.start("alice", "long", "s1")
    with pytest.raises(RateLimitedError) as refused:
        await core.chat.start("alice", "second", "s2")
    assert (refused.value.details or {})["kind"] == "runs" and (refused.value.details or {})["limit"] == 1
    assert (await core.repo.get_session("s2")).active_run_id is None  # type: ignore[union-attr]
    await core.chat.start("bob", "his own", "b1")  # another key has its own slots
    engine.gate.set()
    await eventually(lambda: ended(core, "s1"), what="the first answer's end")
    assert (await core.chat.chat("alice", "second", "s2")).status == "completed"


async def test_a_question_for_a_new_session_refused_for_its_run_leaves_no_session_nor_counts() -> None:
    core = build_core(GatedEngine(), limits=Limits(rate=MovingWindowRate(memory_storage(), "2/minute"),
                                                   slots=InMemoryRunSlots(1)))
    await core.chat.start("alice", "long", "s1")
    with pytest.raises(RateLimitedError) as refused:
        await core.chat.start("alice", "a new session")
    assert (refused.value.details or {})["kind"] == "runs"
    assert (await core.repo.list_sessions("alice", 10, 0))[1] == 1  # only s1
    await core.chat.cancel("alice", "s1")
    assert (await core.chat.start("alice", "a new session")).run_id  # the refusal did not count as a question
    await core.runs.shutdown()


@pytest.mark.parametrize("how", ["cancelled", "failed"])
async def test_a_cancelled_or_failed_run_frees_its_slot(how: str) -> None:
    core = build_core(GatedEngine(), limits=slotted(1))
    if how == "cancelled":
        await core.chat.start("alice", "long", "s1")
        await core.chat.cancel("alice", "s1")
    else:
        assert (await core.chat.chat("alice", "fail", "s1")).status == "failed"
    run = await core.chat.start("alice", "next", "s2")  # admitted: the slot is free again
    assert run.run_id
    await core.runs.shutdown()


async def test_a_queued_question_takes_the_slot_its_sessions_answer_frees() -> None:
    engine = GatedEngine()
    core = build_core(engine, limits=slotted(1))
    await core.chat.start("alice", "first", "s1")
    queued = await core.chat.start("alice", "next", "s1", strategy="enqueue")  # a queued question holds no slot
    engine.gate.set()

    async def answered() -> bool:
        page = (await core.repo.list_messages("s1", MessagePageQuery(limit=10))).messages
        return any(m.run_id == queued.run_id and m.status == "completed" and m.role is Role.ASSISTANT for m in page)

    await eventually(answered, what="the queued question's answer")


async def test_a_queued_question_whose_key_has_no_slot_when_it_would_start_ends_failed_rate_limited() -> None:
    engine = GatedEngine()
    slots = InMemoryRunSlots(1)
    core = build_core(engine, limits=Limits(slots=slots))
    await core.chat.start("alice", "first", "s1")
    subscription = await core.broker.subscribe("s1", await core.broker.last_seq("s1"), 100)
    queued = await core.chat.start("alice", "next", "s1", strategy="enqueue")
    slots.max_runs = 2  # another answer of the key takes the slot s1's answer will free (the race, made certain)
    assert (await slots.acquire("alice", "elsewhere")).allowed
    slots.max_runs = 1
    engine.gate.set()
    events: list[RunEvent] = []
    while not any(e.event_type == "done" and e.run_id == queued.run_id for e in events):
        events += [e for e in await subscription.get_batch() if isinstance(e, RunEvent)]
    mine = [(e.event_type, e.data.get("error_code") or e.data.get("status"))
            for e in events if e.run_id == queued.run_id]
    assert mine[-2:] == [("error", "rate_limited"), ("done", "failed")]
    assert (await core.repo.next_queued_run("s1")) is None  # taken from the queue: it never runs


def test_the_limits_count_by_one_who_per_key_and_end_user_of_bounded_size() -> None:
    assert who_of("alice") == "alice"
    assert len({who_of("alice"), who_of("alice", "u1"), who_of("alice", "u2"), who_of("bob", "u1")}) == 4
    huge = who_of("alice", "\ud800" + "x" * 1_000_000)  # a lone surrogate, a megabyte: a short key all the same
    assert huge.startswith("alice/") and len(huge) < 64


@pytest.mark.parametrize("bad", ["30", "x/minute", "0/minute", "3 per fortnight", "1/second;30/minute"])
def test_a_rate_limit_that_does_not_parse_stops_start_up_naming_the_variable(bad: str) -> None:
    with pytest.raises(SettingsError, match="DATAAGENT_RATE_LIMIT"):
        load_settings(rate_limit=bad)


def test_unset_or_blank_limits_count_nothing() -> None:
    settings = load_settings(rate_limit=" ", max_runs_per_key="")
    assert settings.rate_limit is None and settings.max_runs_per_key is None
    assert load_settings(rate_limit="3/2second").rate_limit == "3/2second"
