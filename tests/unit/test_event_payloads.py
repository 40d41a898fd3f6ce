"""The text-delta and `done` payloads: one constructor each, and the literals kept on the per-token path equal
to what they build."""

from __future__ import annotations

from dataagent.adapters.memory.broker import InMemoryRunBroker
from dataagent.domain.events import done_payload, is_text_delta, text_delta, text_end


def test_a_text_delta_is_its_content_and_not_final() -> None:
    assert text_delta("tok ") == {"content": "tok ", "is_final": False}
    assert text_end() == {"content": "", "is_final": True}


def test_only_a_plain_delta_is_recognised_as_one() -> None:
    assert is_text_delta(text_delta("a"))
    assert not is_text_delta(text_end())
    assert not is_text_delta({"content": "a", "is_final": False, "extra": 1})
    assert not is_text_delta({"content": "a"})


async def test_the_hot_path_literals_build_what_the_constructors_build() -> None:
    content = "chunk "
    # application/runs.py (_drive's per-token publish) and adapters/memory/broker.py (_unhold) keep these
    # literals on purpose (a call per token costs); they must stay equal to the constructors' dicts
    assert {"content": content, "is_final": False} == text_delta(content)
    broker = InMemoryRunBroker()
    published = broker.publish("s", "r", "text", text_delta(content))
    held, complete = await broker.replay("s", published.seq - 1)  # a held delta is rebuilt from a tuple
    assert complete and held[0].data == text_delta(content) and held[0] == published


def test_done_says_cancelled_only_for_a_cancelled_run_and_a_reason_only_when_given() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert done_payload("run_1", "completed", "msg_1", usage) == {
        "run_id": "run_1", "status": "completed", "cancelled": False, "message_id": "msg_1", "token_usage": usage,
    }
    cancelled = done_payload("run_1", "cancelled", None, None, reason="session_deleted")
    assert cancelled["cancelled"] is True and cancelled["reason"] == "session_deleted"
    assert list(cancelled) == ["run_id", "status", "cancelled", "message_id", "token_usage", "reason"]
