"""The semantic layer as text for the model: a bounded block of the system prompt, and describe_table's notes."""

from __future__ import annotations

from typing import Any

from dataagent.adapters.agents.sql.semantic import ColumnContext, SemanticLayer, TableContext

CUT_NOTE = "(Business context cut here: call describe_table for the rest of a table's description.)"


def prompt_context(layer: SemanticLayer, max_chars: int) -> str:
    """The business context for the system prompt, at most `max_chars` characters, cut at whole lines.

    Tables come first (description, synonyms, then each column), then the joins and the business terms; what
    does not fit is left out with a note pointing at describe_table (which gives every table's whole context).
    """
    lines = ["Business context (from the data owners):"]
    if layer.description:
        lines.append(layer.description)
    for name, table in layer.tables.items():
        lines.append(_table_line(name, table))
        lines += [f"  - {_column_text(c)}" for c in table.columns]
    if layer.relationships:
        lines.append("Joins: " + "; ".join(r.text() for r in layer.relationships))
    for term in layer.terms:
        also = f" (also: {', '.join(term.synonyms)})" if term.synonyms else ""
        lines.append(f"Term {term.name!r}{also}: {term.definition}")
    if len(lines) == 1:
        return ""
    return _bounded(lines, max_chars)


def table_notes(layer: SemanticLayer, table: str) -> list[str]:
    """describe_table's lines about `table` from the semantic file (empty when the file says nothing)."""
    context = layer.table(table)
    joins = layer.joins_of(table)
    notes = []
    if context is not None and (context.description or context.synonyms):
        notes.append(_table_line(table, context).removeprefix("- "))
    if joins:
        notes.append("Joins: " + "; ".join(r.text() for r in joins))
    return notes


def column_note(layer: SemanticLayer, table: str, column: str) -> str:
    """The words the file has for a column (`" — description (also: ...; e.g. ...)"`), or ""."""
    context = layer.table(table)
    found = context.column(column) if context is not None else None
    if found is None:
        return ""
    text = _column_text(found).removeprefix(found.name).removeprefix(":")
    return f" —{text}" if text.strip() else ""


def example_values(values: tuple[Any, ...]) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def _table_line(name: str, table: TableContext) -> str:
    also = f" (also called: {', '.join(table.synonyms)})" if table.synonyms else ""
    return f"- Table {name}{also}: {table.description}".rstrip(": ")


def _column_text(column: ColumnContext) -> str:
    parts = [column.name]
    if column.description:
        parts.append(f": {column.description}")
    if column.synonyms:
        parts.append(f" (also: {', '.join(column.synonyms)})")
    if column.examples:
        parts.append(f" e.g. {example_values(column.examples)}")
    return "".join(parts)


def _bounded(lines: list[str], max_chars: int) -> str:
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > max_chars - len(CUT_NOTE) - 1:
            kept.append(CUT_NOTE)
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept) if len(kept) > 1 else ""
