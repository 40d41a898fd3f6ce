"""The deterministic offline demo engine: streams a fixed-shape answer, and runs SQL with approval.

A question that is an SQL statement (SELECT, WITH, SHOW, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, any
case, or prefixed `sql:`) makes it call the tool `run_sql` on the read-only demo database, after an approval
according to DATAAGENT_HITL_POLICY; a write is refused before any approval, as the LLM engine does. Another
question like a verified query (docs/VERIFIED.md) runs that query's SQL the same way. Anything else gets the
demo answer, streamed in `chunks` deltas.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from dataagent.adapters.agents.sql import DataPolicy, SqlDatabase
from dataagent.adapters.agents.sql.scope import visible_semantic
from dataagent.adapters.agents.sql.semantic import SemanticLayer
from dataagent.adapters.agents.sql_step import RUN_SQL, EstimateRules, SqlOutcome, SqlStep
from dataagent.application.audit import AuditTrail
from dataagent.application.ports import RunContext
from dataagent.application.telemetry import NO_TELEMETRY, NO_TRACING, Telemetry, Tracing
from dataagent.domain.events import AgentOutput, TextDelta, ToolCallRequested

_SQL_QUESTION = re.compile(
    r"^\s*(?:sql:\s*(?P<prefixed>.+)|(?P<plain>(?:select|with|show|insert|update|delete|create|drop|alter)\b.*))$",
    re.IGNORECASE | re.DOTALL,
)
SUMMARY_CHUNKS = 4


def sql_of(question: str) -> str | None:
    """The SQL statement a question is, or None for an ordinary question."""
    match = _SQL_QUESTION.match(question)
    if match is None:
        return None
    return (match.group("prefixed") or match.group("plain")).strip() or None


def split_answer(text: str, chunks: int) -> list[str]:
    """Cut `text` into exactly `chunks` word-aligned deltas, padding with `tok{i} ` if it is too short."""
    words = [w + " " for w in text.split()]
    if len(words) >= chunks:
        bounds = [round(i * len(words) / chunks) for i in range(chunks + 1)]
        return ["".join(words[bounds[i] : bounds[i + 1]]) for i in range(chunks)]
    return words + [f"tok{i} " for i in range(len(words), chunks)]


def demo_answer(question: str, semantic: SemanticLayer | None = None) -> str:
    return (
        "This is the DataAgent demo engine (no LLM is connected). "
        f"You asked: “{' '.join(question.split())}”. "
        "Ask an SQL statement such as SELECT * FROM customers to see approval and tables at work."
        + _described(semantic)
    )


def _described(semantic: SemanticLayer | None) -> str:
    """What the semantic file (DATAAGENT_SEMANTIC_FILE) says of each table, as the demo can show it."""
    if semantic is None or not semantic.tables:
        return ""
    tables = "; ".join(f"{name}: {table.description or 'no description'}" for name, table in semantic.tables.items())
    return f" The business context describes {len(semantic.tables)} tables ({tables})."


class DemoEngine:
    """Streams its answer as `chunks` deltas, sleeping `delay_ms` before each one."""

    name = "demo"

    def __init__(
        self,
        chunks: int = 20,
        delay_ms: float = 25.0,
        database: SqlDatabase | None = None,
        hitl_policy: str = "always",
        place: str = "the demo database",
        data_policy: DataPolicy | None = None,
        *, semantic: SemanticLayer | None = None, estimates: EstimateRules | None = None,
        audit: AuditTrail | None = None, telemetry: Telemetry = NO_TELEMETRY, tracing: Tracing = NO_TRACING,
    ) -> None:
        self._chunks = max(1, chunks)
        self._delay_s = max(0.0, delay_ms) / 1000.0
        self._db = database
        self._semantic = semantic
        self._step = SqlStep(
            database, hitl_policy, place=place, data_policy=data_policy, estimates=estimates,
            audit=audit, telemetry=telemetry, tracing=tracing,
        ) if database else None

    def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        sql = sql_of(ctx.question)
        if sql is None and ctx.examples and self._db is not None:  # the most similar verified query answers it
            verified = ctx.examples[0]
            intro = f"A verified query answers a question like yours (“{verified.question}”): I run its SQL. "
            return self._run_sql(ctx, verified.sql, intro)
        if sql is None or self._db is None:
            semantic = self._semantic
            if semantic is not None and self._step is not None:  # only what the principal's policy lets it see
                semantic = visible_semantic(semantic, self._step.scope.entry(ctx.subject))
            answer = demo_answer(ctx.question, semantic)
            return self._say(answer, self._chunks)  # no extra generator hop per chunk
        return self._run_sql(ctx, sql)

    async def _run_sql(self, ctx: RunContext, sql: str, intro: str = "") -> AsyncGenerator[AgentOutput, None]:
        assert self._step is not None
        if intro:
            yield TextDelta(intro)
        call_id = "call_" + uuid.uuid4().hex[:24]
        analysis = await self._step.analyse(sql, ctx.subject)
        yield ToolCallRequested(call_id, RUN_SQL, analysis.as_args())
        outcome = await self._step.run(ctx, analysis)
        yield outcome.tool_completed(call_id)
        async for output in self._say(*_comment(outcome)):
            yield output

    async def _say(self, text: str, chunks: int) -> AsyncGenerator[AgentOutput, None]:
        for piece in split_answer(text, chunks):
            await asyncio.sleep(self._delay_s)
            yield TextDelta(piece)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()


def _comment(outcome: SqlOutcome) -> tuple[str, int]:
    """What the demo says after the statement, and in how many deltas."""
    if outcome.kind == "rejected":
        return f"I did not run the statement, as you asked ({outcome.detail}).", 2
    if outcome.kind == "timed_out":
        return "I did not run the statement: no decision came before the approval timed out.", 2
    if outcome.kind == "refused":
        return f"I did not run the statement: it was refused before approval ({outcome.detail}).", 2
    if outcome.result is None:
        return f"The statement failed: {outcome.detail}", 2
    return _summary(outcome.result.table()), SUMMARY_CHUNKS


def _summary(table: dict[str, Any]) -> str:
    count = table["row_count"]
    shown = f"{count} row{'' if count == 1 else 's'}"
    if table["truncated"]:
        shown += " (only the first ones are shown)"
    columns = ", ".join(table["columns"]) or "none"
    return f"The query returned {shown}. Columns: {columns}."
