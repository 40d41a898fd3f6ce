"""The data tools the model calls: list_tables, describe_table, run_sql (through the shared SQL step) and
propose_chart (checked against an allow-list, drawn by our own spec builder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dataagent.adapters.agents.llm.completion import ToolCallDraft
from dataagent.adapters.agents.llm.prompt import DESCRIBE_TABLE, LIST_TABLES, PROPOSE_CHART, RUN_SQL
from dataagent.adapters.agents.sql import QueryResult, SqlAnalysis, SqlToolError
from dataagent.adapters.agents.sql.context import column_note, table_notes
from dataagent.adapters.agents.sql.scope import visible_semantic
from dataagent.adapters.agents.sql.semantic import SemanticLayer
from dataagent.adapters.agents.sql_step import SqlOutcome, SqlStep
from dataagent.application.ports import RunContext
from dataagent.domain.chart_proposals import ChartProposalError, chart_from_proposal, describe
from dataagent.domain.inputs import printable_value

_KNOWN = f"{LIST_TABLES}, {DESCRIBE_TABLE}, {RUN_SQL} and {PROPOSE_CHART}"


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A tool call checked before it runs: `args` go into the tool_call event; `problem` refuses it."""

    call_id: str
    name: str
    args: dict[str, Any]
    problem: str | None = None
    analysis: SqlAnalysis | None = None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A tool's result: `text` is both the client's tool_result and the model's tool message."""

    text: str
    status: str = "success"
    table: dict[str, Any] | None = None
    chart: dict[str, Any] | None = None
    sql: str | None = None  # the statement run_sql ran (stored with the tool message, for verified queries)


class DataTools:
    """Checks and runs the model's tool calls against one database."""

    def __init__(self, step: SqlStep, semantic: SemanticLayer | None = None) -> None:
        self._step = step
        self._scope = step.scope
        self._semantic = semantic or SemanticLayer()

    def semantic(self, principal: str | None) -> SemanticLayer:
        """The semantic file's words about what the principal's data policy lets it see."""
        return visible_semantic(self._semantic, self._scope.entry(principal))

    async def prepare(self, draft: ToolCallDraft, principal: str | None = None) -> PreparedCall:
        try:
            args = printable_value(json.loads(draft.arguments)) if draft.arguments.strip() else {}
        except (ValueError, RecursionError) as exc:
            problem = f"The arguments of {draft.name} are not valid JSON ({exc}); call it again with a JSON object."
            return PreparedCall(draft.id, draft.name, {"arguments": draft.arguments[:2000]}, problem)
        if not isinstance(args, dict):
            return PreparedCall(draft.id, draft.name, {"arguments": args}, "The arguments must be a JSON object.")
        if draft.name == LIST_TABLES:
            return PreparedCall(draft.id, draft.name, {})
        if draft.name == PROPOSE_CHART:  # checked when it runs, against the latest result
            return PreparedCall(draft.id, draft.name, args)
        if draft.name == DESCRIBE_TABLE:
            return self._prepared_with_text(draft.id, draft.name, args, "table")
        if draft.name == RUN_SQL:
            prepared = self._prepared_with_text(draft.id, draft.name, args, "sql")
            if prepared.problem:
                return prepared
            analysis = await self._step.analyse(args["sql"], principal)
            return PreparedCall(draft.id, draft.name, analysis.as_args(), analysis=analysis)
        return PreparedCall(draft.id, draft.name, args, f"There is no tool {draft.name!r}; the tools are {_KNOWN}.")

    async def run(self, ctx: RunContext, call: PreparedCall, latest: dict[str, Any] | None = None) -> ToolOutcome:
        """Run the call (`latest`: the run's last result table); a tool failure is a result (status error) the
        model reads, never an exception."""
        if call.problem is not None:
            return ToolOutcome(call.problem, "error")
        if call.name == PROPOSE_CHART:
            return _chart_outcome(call.args, latest)
        try:
            if call.name == LIST_TABLES:
                return _tables_outcome(await self._scope.list_tables(ctx.subject))
            if call.name == DESCRIBE_TABLE:
                described = await self._scope.describe_table(call.args["table"], ctx.subject)
                return _described_outcome(described, self.semantic(ctx.subject))
        except SqlToolError as exc:
            return ToolOutcome(f"Error: {exc}", "error")
        assert call.analysis is not None
        return _sql_outcome(await self._step.run(ctx, call.analysis))

    @staticmethod
    def _prepared_with_text(call_id: str, name: str, args: dict[str, Any], key: str) -> PreparedCall:
        value = args.get(key)
        if isinstance(value, str) and value.strip():
            return PreparedCall(call_id, name, {key: value})
        return PreparedCall(call_id, name, args, f"{name} needs a non-empty string argument {key!r}.")


def _chart_outcome(args: dict[str, Any], latest: dict[str, Any] | None) -> ToolOutcome:
    try:
        spec = chart_from_proposal(args, latest)
    except ChartProposalError as exc:
        return ToolOutcome(str(exc), "error")
    return ToolOutcome(describe(spec), chart=spec)


def _tables_outcome(names: list[str]) -> ToolOutcome:
    return ToolOutcome("Tables: " + ", ".join(names) if names else "The database has no tables.")


def _described_outcome(described: dict[str, Any], semantic: SemanticLayer) -> ToolOutcome:
    table = described["table"]
    columns = [
        f"- {c['name']} {c['type']}" + ("" if c["nullable"] else " NOT NULL") + column_note(semantic, table, c["name"])
        for c in described["columns"]
    ]
    names = [c["name"] for c in described["columns"]]
    sample = QueryResult(names, described["sample_rows"], len(described["sample_rows"]), False)
    notes = table_notes(semantic, table)  # the semantic file's words (DATAAGENT_SEMANTIC_FILE)
    text = "\n".join([f"Table {table}, columns:", *columns, *notes, "Sample rows:", sample.as_text(2000)])
    return ToolOutcome(text)


def _sql_outcome(outcome: SqlOutcome) -> ToolOutcome:
    table = outcome.result.table() if outcome.result is not None else None
    text = outcome.text
    if outcome.edited:  # the model (now, and in later turns' history) must know what really ran
        text = f"The user edited the statement to:\n{outcome.sql}\n\n{outcome.text}"
    return ToolOutcome(text, outcome.status, table, sql=outcome.sql if outcome.kind == "ran" else None)
