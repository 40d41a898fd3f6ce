"""What the model is told: the system prompt and the tools it may call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataagent.domain.feedback import VerifiedQuery

LIST_TABLES = "list_tables"
DESCRIBE_TABLE = "describe_table"
RUN_SQL = "run_sql"
PROPOSE_CHART = "propose_chart"
_COLUMN = {"type": "string", "description": "A column of the latest run_sql result"}

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": LIST_TABLES,
            "description": "List the tables and views of the database.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
        },
    },
    {
        "type": "function",
        "function": {
            "name": DESCRIBE_TABLE,
            "description": "Show a table's columns (name, type, nullable) and a few sample rows.",
            "parameters": {
                "type": "object",
                "properties": {"table": {"type": "string", "description": "The table's name"}},
                "required": ["table"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": RUN_SQL,
            "description": (
                "Run one SQL statement and return its rows. A person may review it first: if they reject "
                "or change it, the result says so."
            ),
            "parameters": {
                "type": "object",
                "properties": {"sql": {"type": "string", "description": "Exactly one SQL statement"}},
                "required": ["sql"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": PROPOSE_CHART,
            "description": (
                "Show the latest run_sql result as a chart. Name its columns: x and y (a numeric column) for "
                "bar, line, point or area; theta (numeric) and color for arc. The server draws the chart from "
                "the result's rows; only column names and a plain-text title are accepted."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "mark": {"type": "string", "enum": ["bar", "line", "point", "area", "arc"]},
                    "x": _COLUMN, "y": _COLUMN, "color": _COLUMN, "theta": _COLUMN,
                    "title": {"type": "string", "description": "Plain text, at most 120 characters"},
                },
                "required": ["mark"],
                "additionalProperties": False,
            },
        },
    },
]

_DIALECT_NAMES = {"sqlite": "SQLite", "mysql": "MySQL/MariaDB", "postgres": "PostgreSQL", "tsql": "SQL Server"}


def dialect_name(dialect: str) -> str:
    """sqlglot's dialect name as people write it: "sqlite" -> "SQLite"."""
    return _DIALECT_NAMES.get(dialect, dialect)


def system_prompt(dialect: str, read_only: bool, max_rows: int, context: str = "") -> str:
    """The system message: the role, the tools, the SQL dialect, the rules of the data source and the business
    context (the semantic file's text, already bounded)."""
    name = dialect_name(dialect)
    access = (
        "The database is read-only: write a single SELECT (or WITH ... SELECT) per call; anything else is "
        "refused." if read_only else "Statements that change data are allowed; a person may have to approve them."
    )
    return "\n".join([
        f"You are DataAgent, a data analyst. You answer questions about the data in a {name} database.",
        "Tools: list_tables lists the tables; describe_table shows a table's columns and sample rows; "
        f"run_sql runs one SQL statement in the {name} dialect and returns at most {max_rows} rows.",
        "A result that suits a chart gets one automatically; call propose_chart only if another chart of "
        "the latest result would show the answer better.",
        "Look at the schema before writing SQL; never guess table or column names. Prefer aggregates "
        "(COUNT, SUM, GROUP BY, ORDER BY ... LIMIT) to fetching many rows.",
        access,
        "If a call is rejected or refused, its result says why: take the reason into account, then try "
        "another way or answer without it. Do not repeat a rejected statement.",
        "Answer in the user's language, briefly, with the figures from the results; say when a result was "
        "truncated. Never invent data.",
        *([context] if context else []),
    ])


def examples_text(examples: Sequence[VerifiedQuery]) -> str:
    """The verified queries like the question, as a block of the system message ("" without any)."""
    if not examples:
        return ""
    lines = ["Verified queries: questions like this one whose SQL a person checked. Use them as examples; "
             "adapt them to the question, and look at the schema when it asks for something else."]
    for n, example in enumerate(examples, start=1):
        lines += [f"Example {n}. Question: {example.question}", "SQL:", example.sql]
    return "\n".join(lines)
