"""History for the LLM: stored messages become chat messages within a budget, tool pairs always consistent."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataagent.adapters.agents.llm.history import TOOL_RESULT_CHARS, history_messages
from dataagent.domain.models import Message, Role

NOW = datetime(2024, 6, 1, tzinfo=UTC)
_ids = itertools.count()


def msg(role: Role, content: str, status: str = "completed", **metadata: Any) -> Message:
    n = next(_ids)
    return Message(f"msg_{n}", "s1", role, content, NOW, f"run_{n}", status, metadata)


def user(content: str) -> Message:
    return msg(Role.USER, content)


def tool(call_id: str, content: str = "rows") -> Message:
    return msg(Role.TOOL, content, "success", tool_call_id=call_id, tool_name="run_sql")


def answer(content: str, *call_ids: str, status: str = "completed") -> Message:
    calls = [{"tool_call_id": c, "tool_name": "run_sql", "tool_args": {"sql": f"SELECT {c}"}} for c in call_ids]
    return msg(Role.ASSISTANT, content, status, tool_calls=calls, token_usage=None)


def test_a_turn_becomes_user_tool_calls_tool_results_and_the_answer() -> None:
    stored = [user("How many?"), tool("c1", "n\n5"), answer("Five.", "c1")]

    assert history_messages(stored, 10_000) == [
        {"role": "user", "content": "How many?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "run_sql", "arguments": '{"sql": "SELECT c1"}'}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "n\n5"},
        {"role": "assistant", "content": "Five."},
    ]


def test_calls_without_results_and_results_without_calls_are_left_out() -> None:
    stored = [user("q"), tool("c1"), tool("stray"), answer("a", "c1", "c2")]

    out = history_messages(stored, 10_000)

    assert [m["role"] for m in out] == ["user", "assistant", "tool", "assistant"]
    assert [c["id"] for c in out[1]["tool_calls"]] == ["c1"]
    assert out[2]["tool_call_id"] == "c1"


def test_a_turn_with_no_paired_call_sends_no_tool_messages() -> None:
    stored = [user("q"), tool("stray"), answer("a")]

    assert history_messages(stored, 10_000) == [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
    ]


def test_messages_before_the_first_question_are_dropped() -> None:
    stored = [tool("c0"), answer("cut-off answer", "c0"), user("q"), answer("a")]

    assert [m["content"] for m in history_messages(stored, 10_000)] == ["q", "a"]


def test_cancelled_and_failed_answers_say_so() -> None:
    stored = [user("q1"), answer("half", status="cancelled"), user("q2"), answer("", status="failed")]

    contents = [m["content"] for m in history_messages(stored, 10_000)]

    assert contents == ["q1", "half\n[The user cancelled this answer here.]", "q2", "[This answer failed here.]"]


def test_the_character_budget_keeps_the_newest_whole_turns() -> None:
    stored = [user("a" * 50), answer("b" * 50), user("c" * 10), answer("d" * 10), user("e" * 10), answer("f" * 10)]

    assert [m["content"][0] for m in history_messages(stored, 45)] == ["c", "d", "e", "f"]
    assert [m["content"][0] for m in history_messages(stored, 39)] == ["e", "f"]
    assert history_messages(stored, 19) == []


def test_long_tool_results_are_cut() -> None:
    stored = [user("q"), tool("c1", "x" * (TOOL_RESULT_CHARS + 500)), answer("a", "c1")]

    result = history_messages(stored, 100_000)[2]

    assert len(result["content"]) < TOOL_RESULT_CHARS + 20 and result["content"].endswith("(cut)")


ROLES = st.sampled_from([Role.USER, Role.TOOL, Role.ASSISTANT])


@st.composite
def stored_histories(draw: st.DrawFn) -> list[Message]:
    out = []
    for role in draw(st.lists(ROLES, max_size=30)):
        ids = draw(st.lists(st.sampled_from(["c1", "c2", "c3"]), max_size=3, unique=True))
        text = draw(st.text(max_size=30))
        if role is Role.USER:
            out.append(user(text))
        elif role is Role.TOOL:
            out.append(tool(ids[0] if ids else "c9", text))
        else:
            out.append(answer(text, *ids, status=draw(st.sampled_from(["completed", "cancelled", "failed"]))))
    return out


@given(stored_histories(), st.integers(min_value=0, max_value=400))
def test_any_history_gives_consistent_pairs_within_the_budget(stored: list[Message], budget: int) -> None:
    out = history_messages(stored, budget)

    assert not out or out[0]["role"] == "user"
    size = sum(len(m.get("content") or "") for m in out)
    size += sum(len(c["function"]["arguments"]) + len(c["function"]["name"]) for m in out
                for c in m.get("tool_calls") or ())
    assert size <= budget
    open_calls: list[str] = []
    for message in out:
        if message["role"] == "tool":
            assert open_calls and message["tool_call_id"] == open_calls.pop(0)
            continue
        assert not open_calls, "every call gets its result before the next message"
        if message.get("tool_calls"):
            open_calls = [c["id"] for c in message["tool_calls"]]
    assert not open_calls
