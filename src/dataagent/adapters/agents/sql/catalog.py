"""SqlSchemaCatalog: the schema route's view of the data source, with the semantic file's words."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect

from dataagent.adapters.agents.sql.database import SqlDatabase
from dataagent.adapters.agents.sql.errors import SqlToolError
from dataagent.adapters.agents.sql.semantic import SemanticLayer
from dataagent.application.catalog import ColumnInfo, JoinInfo, SchemaInfo, TableInfo, TermInfo
from dataagent.domain.errors import DataSourceUnavailableError


class SqlSchemaCatalog:
    """Tables and columns as the database has them (read once per call); words from the semantic file."""

    def __init__(self, database: SqlDatabase, semantic: SemanticLayer | None = None) -> None:
        self._db = database
        self._semantic = semantic or SemanticLayer()

    async def describe(self) -> SchemaInfo:
        try:
            found = await self._db.inspect(_read_columns)
        except SqlToolError as exc:
            raise DataSourceUnavailableError(f"The data source cannot be read: {exc}") from exc
        layer = self._semantic
        return SchemaInfo(
            tables=tuple(self._table(name, columns) for name, columns in found.items()),
            relationships=tuple(JoinInfo(r.from_, r.to, r.description) for r in layer.relationships),
            terms=tuple(TermInfo(t.name, t.definition, t.synonyms) for t in layer.terms),
            description=layer.description,
        )

    async def close(self) -> None:
        await self._db.close()

    def _table(self, name: str, columns: list[dict[str, Any]]) -> TableInfo:
        context = self._semantic.table(name)
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
