"""The deterministic offline demo engine: streams a fixed-shape answer, and runs SQL with approval.

A question that is an SQL statement (SELECT, WITH, SHOW, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, any
case, or prefixed `sql:`) makes it call the tool `run_sql` on the read-only demo database, after an approval
according to DATAAGENT_HITL_POLICY. Anything else gets the demo answer, streamed in `chunks` deltas.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from dataagent.adapters.agents.sql import (
    SqlDatabase,
    SqlToolError,
    analyze_sql,
    needs_approval,
)
from dataagent.application.ports import RunContext
from dataagent.domain.approvals import ApprovalAction, DecisionType
from dataagent.domain.events import AgentOutput, TextDelta, ToolCallRequested, ToolCompleted

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


def demo_answer(question: str) -> str:
    return (
        "This is the DataAgent demo engine (no LLM is connected). "
        f"You asked: “{' '.join(question.split())}”. "
        "Ask an SQL statement such as SELECT * FROM customers to see approval and tables at work."
    )


class DemoEngine:
    """Streams its answer as `chunks` deltas, sleeping `delay_ms` before each one."""

    name = "demo"

    def __init__(
        self,
        chunks: int = 20,
        delay_ms: float = 25.0,
        database: SqlDatabase | None = None,
        hitl_policy: str = "always",
    ) -> None:
        self._chunks = max(1, chunks)
        self._delay_s = max(0.0, delay_ms) / 1000.0
        self._db = database
        self._policy = hitl_policy

    def stream(self, ctx: RunContext) -> AsyncGenerator[AgentOutput, None]:
        sql = sql_of(ctx.question)
        if sql is None or self._db is None:
            return self._say(demo_answer(ctx.question), self._chunks)  # no extra generator hop per chunk
        return self._run_sql(ctx, sql)

    async def _run_sql(self, ctx: RunContext, sql: str) -> AsyncGenerator[AgentOutput, None]:
        assert self._db is not None
        call_id = "call_" + uuid.uuid4().hex[:24]
        analysis = analyze_sql(sql, self._db.dialect)
        args = analysis.as_args()
        yield ToolCallRequested(call_id, "run_sql", args)
        if needs_approval(analysis, self._policy):
            decision = await ctx.request_approval(ApprovalAction(
                "run_sql", args, f"Run this {analysis.statement_type} statement on the demo database",
            ))
            if decision.type is DecisionType.REJECT:
                reason = decision.message or "no reason given"
                yield ToolCompleted(call_id, "run_sql", f"The user rejected this statement: {reason}", "error")
                async for output in self._say(f"I did not run the statement, as you asked ({reason}).", 2):
                    yield output
                return
            if decision.type is DecisionType.EDIT and decision.args:
                sql = str({**args, **decision.args}.get("sql", sql))
        async for output in self._execute(call_id, sql):
            yield output

    async def _execute(self, call_id: str, sql: str) -> AsyncGenerator[AgentOutput, None]:
        assert self._db is not None
        try:
            result = await self._db.run_query(sql)
        except SqlToolError as exc:
            yield ToolCompleted(call_id, "run_sql", f"Error: {exc}", "error")
            async for output in self._say(f"The statement failed: {exc}", 2):
                yield output
            return
        yield ToolCompleted(call_id, "run_sql", result.as_text(), "success", table=result.table())
        async for output in self._say(_summary(result.table()), SUMMARY_CHUNKS):
            yield output

    async def _say(self, text: str, chunks: int) -> AsyncGenerator[AgentOutput, None]:
        for piece in split_answer(text, chunks):
            await asyncio.sleep(self._delay_s)
            yield TextDelta(piece)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()


def _summary(table: dict[str, Any]) -> str:
    shown = f"{table['row_count']} rows" + (" (only the first ones are shown)" if table["truncated"] else "")
    columns = ", ".join(table["columns"]) or "none"
    return f"The query returned {shown}. Columns: {columns}."
