"""The run status state machine: allowed moves only, and nothing leaves a terminal state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataagent.domain.errors import InvalidTransitionError
from dataagent.domain.models import ChatRun, RunStatus

TERMINAL = {RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED}


def new_run() -> ChatRun:
    return ChatRun("run_1", "s", "q", datetime.now(UTC))


@given(st.lists(st.sampled_from(list(RunStatus)), max_size=30))
def test_no_sequence_of_moves_reaches_two_terminal_states_or_leaves_one(moves: list[RunStatus]) -> None:
    run = new_run()
    terminal_reached: list[RunStatus] = []
    for target in moves:
        before = run.status
        if run.can_transition(target):
            run.transition(target)
            if target in TERMINAL:
                terminal_reached.append(target)
        else:
            with pytest.raises(InvalidTransitionError):
                run.transition(target)
            assert run.status == before
        if before in TERMINAL:
            assert run.status == before
    assert len(terminal_reached) <= 1


def test_a_run_can_pause_for_approval_and_resume() -> None:
    run = new_run()
    for status in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.RUNNING, RunStatus.COMPLETED):
        run.transition(status)
    assert run.status.is_terminal


def test_a_pending_run_cannot_complete_without_running() -> None:
    with pytest.raises(InvalidTransitionError):
        new_run().transition(RunStatus.COMPLETED)
