"""The session's earlier turns as OpenAI chat messages, within a budget, tool pairs kept consistent."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dataagent.domain.models import Message, Role

TOOL_RESULT_CHARS = 2000
# What the model itself passes to our tools; the rest of a stored call's args is the server's analysis.
_MODEL_ARGS: dict[str, tuple[str, ...]] = {"list_tables": (), "describe_table": ("table",), "run_sql": ("sql",)}
_ENDINGS = {"cancelled": "[The user cancelled this answer here.]", "failed": "[This answer failed here.]"}

ChatMessage = dict[str, Any]


def history_messages(stored: list[Message], max_chars: int) -> list[ChatMessage]:
    """The newest whole turns of `stored` (oldest first) whose text fits in `max_chars` characters.

    A turn is a user question with what its run stored: tool results and the answer. A tool message is
    only sent after the assistant message that called it, and every call sent has its result.
    """
    kept: list[list[ChatMessage]] = []
    used = 0
    for turn in reversed(list(_turns(stored))):
        converted = _convert(turn)
        size = sum(_size(message) for message in converted)
        if used + size > max_chars:
            break
        kept.append(converted)
        used += size
    return [message for turn in reversed(kept) for message in turn]


def _turns(stored: list[Message]) -> Iterable[list[Message]]:
    """Split at user messages; messages before the first user message (a turn cut by the limit) are dropped."""
    turn: list[Message] = []
    for message in stored:
        if message.role is Role.USER:
            if turn:
                yield turn
            turn = [message]
        elif turn:
            turn.append(message)
    if turn:
        yield turn


def _convert(turn: list[Message]) -> list[ChatMessage]:
    question, rest = turn[0], turn[1:]
    out: list[ChatMessage] = [{"role": "user", "content": question.content}]
    answers = [m for m in rest if m.role is Role.ASSISTANT]
    results = {str(m.metadata.get("tool_call_id")): m for m in rest if m.role is Role.TOOL}
    for answer in answers:
        calls = [c for c in answer.metadata.get("tool_calls") or [] if str(c.get("tool_call_id")) in results]
        if calls:
            out.append({"role": "assistant", "content": None, "tool_calls": [_call(c) for c in calls]})
            out += [_result(results[str(c["tool_call_id"])]) for c in calls]
        text = _answer_text(answer)
        if text:
            out.append({"role": "assistant", "content": text})
    return out


def _call(call: dict[str, Any]) -> ChatMessage:
    name = str(call.get("tool_name") or "unknown")
    args = call.get("tool_args") or {}
    if name in _MODEL_ARGS and isinstance(args, dict):
        args = {k: v for k, v in args.items() if k in _MODEL_ARGS[name]}
    arguments = json.dumps(args, ensure_ascii=False)
    return {"id": str(call["tool_call_id"]), "type": "function", "function": {"name": name, "arguments": arguments}}


def _result(message: Message) -> ChatMessage:
    content = message.content
    if len(content) > TOOL_RESULT_CHARS:
        content = content[:TOOL_RESULT_CHARS] + "\n(cut)"
    return {"role": "tool", "tool_call_id": str(message.metadata["tool_call_id"]), "content": content}


def _answer_text(answer: Message) -> str:
    ending = _ENDINGS.get(answer.status)
    if ending is None:
        return answer.content
    return f"{answer.content}\n{ending}" if answer.content else ending


def _size(message: ChatMessage) -> int:
    size = len(message.get("content") or "")
    for call in message.get("tool_calls") or ():
        size += len(call["function"]["arguments"]) + len(call["function"]["name"])
    return size
