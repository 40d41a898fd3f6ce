"""OpenAiEngine: a data agent on any OpenAI-compatible chat completions API, with SQL tools and approvals."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

import openai

from dataagent.adapters.agents.llm.completion import Completions, LlmCallError, Turn
from dataagent.adapters.agents.llm.config import LlmConfig
from dataagent.adapters.agents.llm.history import ChatMessage, history_messages
from dataagent.adapters.agents.llm.prompt import TOOL_SPECS, dialect_name, examples_text, system_prompt
from dataagent.adapters.agents.llm.tools import DataTools
from dataagent.adapters.agents.sql import DataPolicy, SqlDatabase
from dataagent.adapters.agents.sql.context import prompt_context
from dataagent.adapters.agents.sql.semantic import SemanticLayer
from dataagent.adapters.agents.sql_step import EstimateRules, SqlStep
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import RunContext
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.domain.errors import AgentFailedError
from dataagent.domain.events import AgentOutput, TextDelta, ToolCallRequested, ToolCompleted, UsageReported

log = logging.getLogger("dataagent.llm")

NO_KEY = "unused"  # local servers (vLLM, Ollama) take any key; the SDK insists on one


class OpenAiEngine:
    """Streams the model's answer, runs the tools it calls (run_sql after approval), for up to max_steps rounds."""

    name = "llm"

    def __init__(
        self,
        config: LlmConfig,
        database: SqlDatabase,
        hitl_policy: str = "always",
        client: openai.AsyncOpenAI | None = None,
        data_policy: DataPolicy | None = None,
        *, semantic: SemanticLayer | None = None, estimates: EstimateRules | None = None,
        audit: AuditTrail | None = None, telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self._db = database
        self._semantic = semantic or SemanticLayer()
        self._client = client or openai.AsyncOpenAI(
            api_key=config.api_key or NO_KEY, base_url=config.base_url, timeout=config.timeout_s, max_retries=0,
        )
        self._completions = Completions(self._client, config, telemetry, tracing)
        place = f"the {dialect_name(database.dialect)} database"
        step = SqlStep(database, hitl_policy, place=place, data_policy=data_policy, estimates=estimates, audit=audit,
                       telemetry=telemetry, tracing=tracing)
        self._tools = DataTools(step, self._semantic)

    def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        return self._run(ctx)

    async def close(self) -> None:
        await self._client.close()
        await self._db.close()

    async def _run(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        messages = await self._opening_messages(ctx)
        spoke = False
        seen_ids: set[str] = set()
        latest: dict[str, Any] | None = None  # the last result table, for propose_chart
        for step in range(self.config.max_steps + 1):
            turn = Turn()
            async with contextlib.aclosing(self._complete(turn, messages, step, _user_of(ctx))) as texts:
                async for text in texts:
                    if spoke and len(turn.text) == 1:  # the first delta of a later round: keep rounds apart
                        text = "\n\n" + text
                    yield TextDelta(text)
            spoke = spoke or bool(turn.text)
            if turn.usage is not None:
                yield UsageReported(turn.usage)
            if not turn.calls:
                return
            if step == self.config.max_steps:
                yield TextDelta(f"\n\n(Stopped: the limit of {self.config.max_steps} tool-call rounds was reached.)")
                return
            _unique_ids(turn, seen_ids)
            messages.append(turn.assistant_message())
            for draft in turn.calls:
                call = await self._tools.prepare(draft, ctx.subject)
                yield ToolCallRequested(call.call_id, call.name, call.args)
                outcome = await self._tools.run(ctx, call, latest)
                latest = outcome.table if outcome.table is not None else latest
                yield ToolCompleted(call.call_id, call.name, outcome.text, outcome.status, outcome.table,
                                    outcome.chart, outcome.sql)
                messages.append({"role": "tool", "tool_call_id": call.call_id, "content": outcome.text})

    async def _complete(
        self, turn: Turn, messages: list[ChatMessage], step: int, user: str | None
    ) -> AsyncGenerator[str, None]:
        """One completion's text deltas; a failure ends the run as failed, with a message safe to show."""
        params: dict[str, Any] = {"messages": messages, "tools": TOOL_SPECS}
        if user is not None:
            params["user"] = user  # whom the provider may attribute the request to (abuse monitoring)
        if step == self.config.max_steps:
            params["tool_choice"] = "none"  # the last round must answer with what it has
        try:
            async with contextlib.aclosing(self._completions.stream(turn, **params)) as texts:
                async for text in texts:
                    yield text
        except LlmCallError as exc:
            log.warning("LLM call failed: %s", exc)
            raise AgentFailedError(str(exc)) from None

    async def _opening_messages(self, ctx: RunContext) -> list[ChatMessage]:
        db = self._db
        # the business context takes at most half the history budget; the earlier turns get the rest
        context = prompt_context(self._tools.semantic(ctx.subject), self.config.history_chars // 2)
        examples = examples_text(ctx.examples)  # verified queries like the question (run_started names them)
        prompt = system_prompt(db.dialect, db.read_only, db.max_rows, "\n".join(filter(None, [context, examples])))
        messages: list[ChatMessage] = [{"role": "system", "content": prompt}]
        if self.config.history_messages > 0:
            stored = await ctx.load_history(self.config.history_messages)
            messages += history_messages(stored, self.config.history_chars - len(context) - len(examples))
        messages.append({"role": "user", "content": ctx.question})
        return messages


def _user_of(ctx: RunContext) -> str | None:
    """The model's `user` field: the end user the session was created for, else its principal."""
    return ctx.end_user if ctx.end_user is not None else ctx.principal


def _unique_ids(turn: Turn, seen: set[str]) -> None:
    """Some servers reuse call ids across rounds; ids must be unique within the conversation."""
    for n, call in enumerate(turn.calls):
        if call.id in seen:
            call.id = f"{call.id}_{len(seen)}_{n}"
        seen.add(call.id)
