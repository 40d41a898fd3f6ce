"""The data source's schema as frontends read it: tables and columns with their types and business words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type: str
    nullable: bool
    description: str = ""
    synonyms: tuple[str, ...] = ()
    examples: tuple[str | int | float | bool, ...] = ()


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    columns: tuple[ColumnInfo, ...]
    description: str = ""
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JoinInfo:
    from_column: str
    to_column: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class TermInfo:
    name: str
    definition: str
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    tables: tuple[TableInfo, ...]
    relationships: tuple[JoinInfo, ...] = ()
    terms: tuple[TermInfo, ...] = ()
    description: str = ""


class SchemaCatalog(Protocol):
    async def describe(self, principal: str | None = None) -> SchemaInfo:
        """The tables and columns (names, types) `principal` may see, with the semantic file's words for them."""
        ...

    async def close(self) -> None:
        """Release the connections it holds."""
        ...
