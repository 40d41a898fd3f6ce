"""A run's end always frees the session and publishes exactly one `done`, whatever its final write raises."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataagent.adapters.memory.repositories import InMemorySessionRepository
from dataagent.domain.errors import StoreUnavailableError
from dataagent.domain.events import EventType
from dataagent.domain.models import Message, MessagePageQuery, Role, RunState
from tests.unit.engines import ScriptedEngine, Step
from tests.unit.harness import build_core


def _struct_error() -> Exception:
    try:
        struct.unpack("<I", b"\0")
    except struct.error as exc:
        return exc
    raise AssertionError("unreachable")


FAILURES: list[Exception] = [
    RuntimeError("Transport does not expose socket instance"), AttributeError("'NoneType' has no 'write'"),
    _struct_error(), IndexError("index out of range"), asyncio.IncompleteReadError(b"", 4), OSError(104, "reset"),
    StoreUnavailableError(),
]


class FailingFinalWrites(InMemorySessionRepository):
    """The memory store, except that while `failing`, storing an answer raises `answer_error` and clearing a
    session's run state raises `state_error` (None: works)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.answer_error: Exception = RuntimeError()
        self.state_error: Exception | None = None

    async def append_message(
        self, message: Message, run_state: RunState | None = None, max_session_bytes: int | None = None
    ) -> Message:
        if self.failing and message.role == Role.ASSISTANT:
            raise self.answer_error
        return await super().append_message(message, run_state, max_session_bytes)

    async def set_run_state(self, session_id: str, **kwargs: Any) -> None:
        if self.failing and self.state_error is not None:
            raise self.state_error
        await super().set_run_state(session_id, **kwargs)


@given(answer_error=st.sampled_from(FAILURES), state_error=st.none() | st.sampled_from(FAILURES),
       cancelled=st.booleans())
def test_a_run_whose_final_write_raises_anything_ends_with_one_done_and_frees_the_session(
    answer_error: Exception, state_error: Exception | None, cancelled: bool
) -> None:
    asyncio.run(_scenario(answer_error, state_error, cancelled))


async def _scenario(answer_error: Exception, state_error: Exception | None, cancelled: bool) -> None:
    repo = FailingFinalWrites()
    repo.answer_error, repo.state_error = answer_error, state_error
    core = build_core(ScriptedEngine([Step("text"), Step("sleep", "0.05" if cancelled else "0")]), repo=repo)
    watcher = await core.broker.subscribe("s1", None, 1000)
    run = await core.chat.start("alice", "question", "s1")
    repo.failing = True
    if cancelled:
        await core.runs.cancel("s1", run.run_id)
    await asyncio.wait_for(core.runs.wait_finished(run.run_id), 5)
    events = list(watcher.replayed) + (await watcher.get_batch())
    kinds = [e.event_type for e in events]
    assert kinds.count(EventType.DONE) == 1 and kinds[-1] == EventType.DONE, kinds
    assert EventType.ERROR in kinds
    done = events[-1].data
    assert done["message_id"] is None and done["status"] == ("cancelled" if cancelled else "failed")
    assert await core.broker.active_run("s1") is None and core.runs.active_runs == 0

    repo.failing = False  # the store is back: the session shows no run and takes a new question at once
    assert (await core.sessions.get("alice", "s1")).active_run_id is None
    assert [s.active_run_id for s in (await core.sessions.list_sessions("alice", 10, 0))[0]] == [None]
    again = await core.chat.chat("alice", "again", "s1")
    assert again.status == "completed"
    history = (await core.sessions.messages("alice", "s1", MessagePageQuery(limit=100))).messages
    assert [m.role for m in history] == ["user", "user", "assistant"]
