"""What one principal may see of a database under DATAAGENT_DATA_POLICY: its statements, tables and columns.

The schema (the tables, and the columns of the tables any entry names) is read from the database through its
read-only connections, and kept for `SCHEMA_TTL_S`. Without a policy, or for a principal no entry applies to,
everything passes unchanged.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from sqlglot import exp

from dataagent.adapters.agents.sql.analysis import SqlAnalysis
from dataagent.adapters.agents.sql.database import SqlDatabase
from dataagent.adapters.agents.sql.enforce import PolicyRefusal, Schema, enforce
from dataagent.adapters.agents.sql.errors import SqlRefusedError, SqlToolError
from dataagent.adapters.agents.sql.policy import DataPolicy, PolicyEntry
from dataagent.adapters.agents.sql.semantic import SemanticLayer

SCHEMA_TTL_S = 60.0
SAMPLE_ROWS = 3


def visible_semantic(layer: SemanticLayer, entry: PolicyEntry | None) -> SemanticLayer:
    """The semantic file narrowed to the tables, columns and joins `entry` allows (all of it without an entry)."""
    if entry is None:
        return layer
    tables = {}
    for name, table in layer.tables.items():
        if (rule := entry.rule(name)) is not None:
            columns = tuple(c for c in table.columns if rule.allows_column(c.name))
            tables[name] = table.model_copy(update={"columns": columns})
    joins = tuple(r for r in layer.relationships if _allowed(entry, r.from_) and _allowed(entry, r.to))
    return layer.model_copy(update={"tables": tables, "relationships": joins})


def _allowed(entry: PolicyEntry, ref: str) -> bool:
    table, column = ref.split(".")
    rule = entry.rule(table)
    return rule is not None and rule.allows_column(column)


class PolicyScope:
    """A data policy (or none) over one database."""

    def __init__(self, database: SqlDatabase, policy: DataPolicy | None = None) -> None:
        self.database = database
        self.policy = policy
        self._schema: Schema | None = None
        self._read_at = 0.0

    def entry(self, principal: str | None) -> PolicyEntry | None:
        """The entry that applies to `principal`; None: it may read everything."""
        return self.policy.for_principal(principal) if self.policy is not None else None

    async def apply(self, analysis: SqlAnalysis, principal: str | None) -> SqlAnalysis:
        """The analysis with the statement as it will run (`executed_sql`), or refused with the reason."""
        entry = self.entry(principal)
        if entry is None or analysis.refusal is not None:
            return analysis
        try:
            executed = enforce(analysis.sql, self.database.quoting, entry, await self.schema())
        except PolicyRefusal as exc:
            return dataclasses.replace(analysis, reason=str(exc), refusal=str(exc), policy=entry.name)
        except SqlToolError as exc:  # the schema could not be read: refused, never run unchecked
            reason = f"the schema could not be read to apply the data policy ({exc.message})"
            return dataclasses.replace(analysis, reason=reason, refusal=reason, policy=entry.name)
        return dataclasses.replace(analysis, executed_sql=executed, policy=entry.name)

    async def list_tables(self, principal: str | None) -> list[str]:
        """The tables the principal may read."""
        tables = await self.database.list_tables()
        entry = self.entry(principal)
        return tables if entry is None else [t for t in tables if entry.rule(t) is not None]

    async def describe_table(self, name: str, principal: str | None) -> dict[str, Any]:
        """The table's allowed columns and up to 3 sample rows from its allowed rows."""
        entry = self.entry(principal)
        if entry is None:
            return await self.database.describe_table(name)
        schema = await self.schema()
        actual = schema.resolve(name)
        rule = entry.rule(actual) if actual is not None else None
        if actual is None or rule is None:
            raise SqlRefusedError(f"Refused: the data policy does not allow the table {name}.")
        described = await self.database.describe_table(actual)
        columns = [c for c in described["columns"] if rule.allows_column(c["name"])]
        target = exp.Table(this=exp.to_identifier(actual, quoted=True))
        sample = exp.select("*").from_(target).limit(SAMPLE_ROWS).sql(dialect=self.database.dialect)
        try:
            result = await self.database.run_query(enforce(sample, self.database.quoting, entry, schema))
        except PolicyRefusal as exc:
            raise SqlRefusedError(f"Refused: {exc}.") from None
        return {"table": actual, "columns": columns, "sample_rows": result.rows}

    async def schema(self) -> Schema:
        """The tables and the columns of those the policy names (read again after SCHEMA_TTL_S)."""
        if self._schema is None or time.monotonic() - self._read_at > SCHEMA_TTL_S:
            self._schema, self._read_at = await self._read_schema(), time.monotonic()
        return self._schema

    async def _read_schema(self) -> Schema:
        named = {t for entry in (self.policy.entries.values() if self.policy else ()) for t in entry.tables}
        tables = await self.database.list_tables()
        columns: dict[str, tuple[str, ...]] = {}
        for table in tables:
            columns[table] = ()
            if table.lower() in named:
                described = await self.database.describe_table(table)
                columns[table] = tuple(c["name"] for c in described["columns"])
        return Schema(columns)
