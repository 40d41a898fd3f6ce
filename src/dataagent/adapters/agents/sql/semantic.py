"""The business context of DATAAGENT_SEMANTIC_FILE: tables and columns in words, synonyms, terms, joins.

    semantic = load_semantic("examples/semantic.yaml")   # SemanticFileError: one line naming the place
    semantic.table("orders")                            # TableContext or None (names match case-insensitively)

The file format is described in docs/SEMANTIC.md; `examples/semantic.yaml` is a complete example.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

MAX_FILE_BYTES = 1024 * 1024
_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
_Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
_Example = str | int | float | bool
_T = TypeVar("_T")
_COLUMN_REF = re.compile(r"^[^.\s]+\.[^.\s]+$")


class SemanticFileError(ValueError):
    """The semantic file cannot be used; the message is one line naming the file and the place in it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnContext(_Strict):
    name: _Name
    description: _Text = ""
    synonyms: tuple[_Name, ...] = ()
    examples: tuple[_Example, ...] = Field((), max_length=20)


class TableContext(_Strict):
    description: _Text = ""
    synonyms: tuple[_Name, ...] = ()
    columns: tuple[ColumnContext, ...] = ()

    def column(self, name: str) -> ColumnContext | None:
        return _find({c.name: c for c in self.columns}, name)


class Relationship(_Strict):
    """A join: `from` and `to` are `table.column`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    from_: str = Field(alias="from")
    to: str
    description: _Text = ""

    @field_validator("from_", "to")
    @classmethod
    def _column_ref(cls, value: str) -> str:
        if not _COLUMN_REF.match(value.strip()):
            raise ValueError("must be table.column")
        return value.strip()

    def touches(self, table: str) -> bool:
        return any(ref.split(".")[0].lower() == table.lower() for ref in (self.from_, self.to))

    def text(self) -> str:
        return f"{self.from_} = {self.to}" + (f" ({self.description})" if self.description else "")


class Term(_Strict):
    name: _Name
    definition: _Text
    synonyms: tuple[_Name, ...] = ()


class SemanticLayer(_Strict):
    """What the file says; empty when there is no file."""

    description: _Text = ""
    tables: dict[_Name, TableContext] = Field(default_factory=dict)
    relationships: tuple[Relationship, ...] = ()
    terms: tuple[Term, ...] = ()

    def table(self, name: str) -> TableContext | None:
        return _find(self.tables, name)

    def joins_of(self, table: str) -> list[Relationship]:
        return [r for r in self.relationships if r.touches(table)]


def load_semantic(path: str) -> SemanticLayer:
    """Read and validate the YAML file at `path`; SemanticFileError (one line) if it cannot be used."""
    shown = os.path.basename(path) or path
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SemanticFileError(f"semantic file {shown}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SemanticFileError(f"semantic file {shown}: larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
        raise SemanticFileError(f"semantic file {shown}: {where}: {problem}") from None
    return parse_semantic(data, shown)


def parse_semantic(data: Any, shown: str = "(inline)") -> SemanticLayer:
    """The layer `data` (the file's decoded YAML) describes; SemanticFileError naming the first bad place."""
    if not isinstance(data, dict):
        raise SemanticFileError(f"semantic file {shown}: must be a mapping with a `tables` key")
    try:
        return SemanticLayer.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SemanticFileError(f"semantic file {shown}: {_place(error['loc'])}: {error['msg']}") from None


def _place(loc: tuple[Any, ...]) -> str:
    """('tables', 'orders', 'columns', 2, 'name') -> tables.orders.columns[2].name"""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            part = "from" if part == "from_" else str(part)
            text += f".{part}" if text else part
    return text or "(top)"


def _find(items: dict[str, _T], name: str) -> _T | None:
    if name in items:
        return items[name]
    folded = [value for key, value in items.items() if key.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None
