"""SqlSchemaCatalog: the schema route's view of the data source, with the semantic file's words."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect

from dataagent.adapters.agents.sql.database import SqlDatabase
from dataagent.adapters.agents.sql.errors import SqlToolError
from dataagent.adapters.agents.sql.policy import DataPolicy, PolicyEntry
from dataagent.adapters.agents.sql.scope import visible_semantic
from dataagent.adapters.agents.sql.semantic import SemanticLayer
from dataagent.application.catalog import ColumnInfo, JoinInfo, SchemaInfo, TableInfo, TermInfo
from dataagent.domain.errors import DataSourceUnavailableError


class SqlSchemaCatalog:
    """Tables and columns as the database has them (read once per call); words from the semantic file. Under a
    data policy a principal sees only the tables and columns its entry allows, as list_tables shows them."""

    def __init__(
        self, database: SqlDatabase, semantic: SemanticLayer | None = None, data_policy: DataPolicy | None = None,
    ) -> None:
        self._db = database
        self._semantic = semantic or SemanticLayer()
        self._policy = data_policy

    async def describe(self, principal: str | None = None) -> SchemaInfo:
        try:
            found = await self._db.inspect(_read_columns)
        except SqlToolError as exc:
            raise DataSourceUnavailableError(f"The data source cannot be read: {exc}") from exc
        entry = self._policy.for_principal(principal) if self._policy is not None else None
        layer = visible_semantic(self._semantic, entry)
        return SchemaInfo(
            tables=tuple(self._table(name, columns, layer) for name, columns in _allowed(found, entry).items()),
            relationships=tuple(JoinInfo(r.from_, r.to, r.description) for r in layer.relationships),
            terms=tuple(TermInfo(t.name, t.definition, t.synonyms) for t in layer.terms),
            description=layer.description,
        )

    async def close(self) -> None:
        await self._db.close()

    def _table(self, name: str, columns: list[dict[str, Any]], layer: SemanticLayer) -> TableInfo:
        context = layer.table(name)
        infos = []
        for column in columns:
            words = context.column(column["name"]) if context is not None else None
            infos.append(ColumnInfo(
                column["name"], column["type"], column["nullable"],
                words.description if words else "", words.synonyms if words else (), words.examples if words else (),
            ))
        if context is None:
            return TableInfo(name, tuple(infos))
        return TableInfo(name, tuple(infos), context.description, context.synonyms)


def _allowed(found: dict[str, list[dict[str, Any]]], entry: PolicyEntry | None) -> dict[str, list[dict[str, Any]]]:
    """The tables and columns `entry` allows (all without an entry)."""
    if entry is None:
        return found
    return {
        name: [c for c in columns if rule.allows_column(c["name"])]
        for name, columns in found.items() if (rule := entry.rule(name)) is not None
    }


def _read_columns(sync_conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Each table and view of the default schema (sorted) -> its columns (name, type, nullable)."""
    inspector = inspect(sync_conn)
    found = inspector.get_table_names() + inspector.get_view_names()
    names = sorted(n for n in set(found) if not n.startswith("sqlite_"))
    return {
        name: [
            {"name": c["name"], "type": _type_name(c["type"]), "nullable": bool(c.get("nullable", True))}
            for c in inspector.get_columns(name)
        ]
        for name in names
    }


def _type_name(column_type: Any) -> str:
    try:
        return str(column_type)
    except Exception:
        return type(column_type).__name__
