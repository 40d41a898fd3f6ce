"""One streamed chat completion: text deltas as they come, tool calls reassembled, usage, bounded retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import anyio
import openai

from dataagent.adapters.agents.llm.config import LlmConfig, endpoint
from dataagent.adapters.agents.llm.failures import failure_message, is_transient, redact, retry_delay
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.domain.inputs import TextJoiner, valid_text
from dataagent.domain.models import TokenUsage

log = logging.getLogger("dataagent.llm")

CLOSE_TIMEOUT_S = 2.0
_CALL_ERRORS = (openai.OpenAIError, ValueError)  # ValueError: a malformed chunk (json.JSONDecodeError)


class LlmCallError(Exception):
    """A completion failed for good; the message is safe to show (no secret)."""


@dataclass(slots=True)
class ToolCallDraft:
    """A tool call as its fragments arrive; `arguments` is JSON text once the stream ends."""

    id: str
    name: str = ""
    arguments: str = ""

    def as_message_part(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(slots=True)
class Turn:
    """What one completion said: text, tool calls, usage, finish reason."""

    text: list[str] = field(default_factory=list)
    calls: list[ToolCallDraft] = field(default_factory=list)
    usage: TokenUsage | None = None
    finish_reason: str | None = None
    _by_index: dict[int, ToolCallDraft] = field(default_factory=dict)

    @property
    def started(self) -> bool:
        """Whether any token (text or tool call) arrived: from then on a failure is not retried."""
        return bool(self.text or self.calls)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def add_fragment(self, index: int | None, call_id: str | None, name: str | None, arguments: str | None) -> None:
        """Merge one streamed tool-call fragment (providers differ: the index or the id may be missing)."""
        draft = self._draft_for(index, call_id)
        if name and name != draft.name:
            draft.name = name if not draft.name else draft.name + name
        if arguments:
            draft.arguments += arguments

    def _draft_for(self, index: int | None, call_id: str | None) -> ToolCallDraft:
        if index is None:
            same = self.calls and (not call_id or call_id == self.calls[-1].id)
            index = len(self.calls) - 1 if same else len(self.calls)
        draft = self._by_index.get(index)
        if draft is None:
            draft = ToolCallDraft(call_id or "call_" + uuid.uuid4().hex[:24])
            self._by_index[index] = draft
            self.calls.append(draft)
        return draft

    def assistant_message(self) -> dict[str, Any]:
        """The turn as the assistant message to send back with the tool results."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.calls:
            message["tool_calls"] = [call.as_message_part() for call in self.calls]
        return message


class Completions:
    """Streams completions from an OpenAI-compatible server; retries transient failures before the first token."""

    def __init__(
        self, client: openai.AsyncOpenAI, config: LlmConfig, telemetry: Telemetry = NO_TELEMETRY,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self._client = client
        self._config = config
        self._telemetry, self._tracing = telemetry, tracing
        self._where = endpoint(str(client.base_url))  # what the SDK really calls (it reads OPENAI_BASE_URL too)

    async def stream(self, turn: Turn, **params: Any) -> AsyncGenerator[str, None]:
        """Yield the text deltas of one completion, filling `turn`; LlmCallError when it fails for good."""
        began = time.perf_counter()
        try:  # the span is not made current: this generator yields into its consumer's context
            with self._tracing.span("dataagent.llm", {"gen_ai.request.model": self._config.model}, current=False):
                async with contextlib.aclosing(self._retried(turn, params)) as texts:
                    async for text in texts:
                        yield text
        except LlmCallError:
            self._telemetry.llm_call("error", time.perf_counter() - began)
            raise
        self._telemetry.llm_call("ok", time.perf_counter() - began)
        if turn.usage is not None:
            self._telemetry.llm_tokens(turn.usage.prompt_tokens, turn.usage.completion_tokens)

    async def _retried(self, turn: Turn, params: dict[str, Any]) -> AsyncGenerator[str, None]:
        attempt = 0
        while True:
            try:
                async with contextlib.aclosing(self._attempt(turn, params)) as texts:
                    async for text in texts:
                        yield text
                return
            except _CALL_ERRORS as exc:
                if turn.started or not is_transient(exc) or attempt >= self._config.retries:
                    raise LlmCallError(self._describe(exc, turn.started, attempt + 1)) from exc
                self._telemetry.llm_retry()
                delay = retry_delay(exc, attempt, self._config.retry_base_s)
                log.info("LLM call failed (%s); retry %d in %.2f s", self._describe(exc, False, 1), attempt + 1,
                         delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _attempt(self, turn: Turn, params: dict[str, Any]) -> AsyncGenerator[str, None]:
        stream = await self._client.chat.completions.create(
            model=self._config.model, stream=True, stream_options={"include_usage": True}, **params,
        )
        joiner = TextJoiner()  # a surrogate pair split across two chunks is joined; lone ones become U+FFFD
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                    turn.usage = TokenUsage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                text = joiner.feed(delta.content) if delta is not None and delta.content else ""
                if text:
                    turn.text.append(text)
                    yield text
                for fragment in (delta.tool_calls if delta is not None else None) or ():
                    function = fragment.function
                    turn.add_fragment(fragment.index, fragment.id, function.name if function else None,
                                      function.arguments if function else None)
                if choice.finish_reason:
                    turn.finish_reason = choice.finish_reason
            if rest := joiner.flush():
                turn.text.append(rest)
                yield rest
            for call in turn.calls:
                call.name, call.arguments = valid_text(call.name), valid_text(call.arguments)
        finally:
            await _close(stream)

    def _describe(self, exc: BaseException, started: bool, attempts: int) -> str:
        config = self._config
        message = failure_message(exc, self._where, config.timeout_s, config.model, started)
        if attempts > 1:
            message += f" (after {attempts} attempts)"
        return redact(message, config.api_key)


async def _close(stream: Any) -> None:
    """Close the HTTP response, also when cancelled: the server stops generating (and billing) tokens."""
    with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True), contextlib.suppress(Exception):
        await stream.close()
