"""Data policies per principal (DATAAGENT_DATA_POLICY): the tables, columns and rows each principal may read.

    groups:                       # optional: a principal in a group gets the group's entry
      analysts: [alice, bob]
    policies:
      analysts:
        tables:
          orders:
            columns: [id, customer_id, quantity, status]   # omitted: every column
            rows: "status <> 'cancelled'"                   # omitted: every row
          products: {}
      default:                    # principals named nowhere; omit it to leave them unrestricted
        tables:
          products: {}

A principal's entry is its own, else its group's (at most one group with an entry), else `default`; with no
`default` a principal named nowhere has no policy (it may read everything). `default: {tables: {}}` denies all.
An end user of a principal (X-User-ID) is named `principal:end_user` (a principal's name holds no colon), in
`policies` and in `groups` alike; an end user named nowhere gets its principal's entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.errors import SqlglotError

DEFAULT_ENTRY = "default"


class DataPolicyError(ValueError):
    """The policy file is invalid; the message names the place (line and key) on one line."""


@dataclass(frozen=True, slots=True)
class TableRule:
    """What may be read of one table: `columns` (None: all) and a row filter (None: all rows)."""

    columns: frozenset[str] | None = None
    rows: str | None = None

    def allows_column(self, name: str) -> bool:
        return self.columns is None or name.lower() in self.columns


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One named entry: the tables (lower-case names) its principals may read, and how."""

    name: str
    tables: Mapping[str, TableRule] = field(default_factory=dict)

    def rule(self, table: str) -> TableRule | None:
        return self.tables.get(table.lower())


@dataclass(frozen=True, slots=True)
class DataPolicy:
    """Every entry of the file, and which group each principal belongs to."""

    entries: Mapping[str, PolicyEntry]
    groups: Mapping[str, str] = field(default_factory=dict)  # principal -> the group that has an entry

    def for_principal(self, principal: str | None) -> PolicyEntry | None:
        """The entry that applies to `principal` (or `principal:end_user`: the end user's own or its group's, else
        the principal's), or None when none does (it may read everything)."""
        name = principal or ""
        key, sep, _ = name.partition(":")
        if sep and name not in self.entries and name not in self.groups:
            return self.for_principal(key)
        if name in self.entries and name != DEFAULT_ENTRY:
            return self.entries[name]
        if (group := self.groups.get(name)) is not None:
            return self.entries[group]
        return self.entries.get(DEFAULT_ENTRY)


def load_data_policy(path: str) -> DataPolicy:
    """Read and validate the YAML file at `path`; DataPolicyError (one line, naming the place) if it is wrong."""
    try:
        with open(path, encoding="utf-8") as file:
            document = yaml.compose(file)
    except OSError as exc:
        raise DataPolicyError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise DataPolicyError(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_data_policy(document, path)


def parse_data_policy(document: yaml.Node | None, source: str = "data policy") -> DataPolicy:
    """The policy a composed YAML document describes (see the module's docstring)."""
    top = _mapping(document, source, "the file")
    unknown = set(top) - {"groups", "policies"}
    if unknown:
        key = sorted(unknown)[0]
        raise _error(source, top[key][0], key, "unknown key (expected groups and policies)")
    entries = {
        name: _entry(name, node, source, f"policies.{name}")
        for name, (_, node) in _mapping(top["policies"][1], source, "policies").items()
    } if "policies" in top else {}
    groups = _groups(top["groups"][1], entries, source) if "groups" in top else {}
    return DataPolicy(entries, groups)


def _groups(node: yaml.Node, entries: Mapping[str, PolicyEntry], source: str) -> dict[str, str]:
    members: dict[str, str] = {}
    for group, (_, value) in _mapping(node, source, "groups").items():
        if not isinstance(value, yaml.SequenceNode):
            raise _error(source, value, f"groups.{group}", "must be a list of principals")
        for item in value.value:
            principal = _text(item, source, f"groups.{group}")
            if group not in entries:
                continue
            if principal in members and members[principal] != group:
                raise _error(source, item, f"groups.{group}",
                             f"{principal} is also in group {members[principal]}, which has an entry too")
            members[principal] = group
    return members


def _entry(name: str, node: yaml.Node, source: str, place: str) -> PolicyEntry:
    keys = _mapping(node, source, place)
    for key, (key_node, _) in keys.items():
        if key != "tables":
            raise _error(source, key_node, f"{place}.{key}", "unknown key (expected tables)")
    if "tables" not in keys:
        raise _error(source, node, place, "needs `tables` (an empty mapping denies every table)")
    tables_node = keys["tables"][1]
    tables: dict[str, TableRule] = {}
    for table, (_, rule_node) in _mapping(tables_node, source, f"{place}.tables").items():
        tables[table.lower()] = _rule(rule_node, source, f"{place}.tables.{table}")
    return PolicyEntry(name, tables)


def _rule(node: yaml.Node, source: str, place: str) -> TableRule:
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return TableRule()
    keys = _mapping(node, source, place)
    columns: frozenset[str] | None = None
    rows: str | None = None
    for key, (key_node, value) in keys.items():
        if key == "columns":
            columns = _columns(value, source, f"{place}.columns")
        elif key == "rows":
            rows = _row_filter(value, source, f"{place}.rows")
        else:
            raise _error(source, key_node, f"{place}.{key}", "unknown key (expected columns and rows)")
    return TableRule(columns, rows)


def _columns(node: yaml.Node, source: str, place: str) -> frozenset[str] | None:
    if isinstance(node, yaml.ScalarNode) and node.value == "*":
        return None
    if not isinstance(node, yaml.SequenceNode):
        raise _error(source, node, place, 'must be a list of column names, or "*"')
    return frozenset(_text(item, source, place).lower() for item in node.value)


def _row_filter(node: yaml.Node, source: str, place: str) -> str:
    text = _text(node, source, place)
    try:
        condition = sqlglot.condition(text)
    except SqlglotError as exc:
        message = " ".join(str(exc).split())[:200]
        raise _error(source, node, place, f"not a SQL condition ({message})") from None
    if any(isinstance(n, (exp.Query, exp.Table, exp.Subquery)) for n in condition.walk()):
        raise _error(source, node, place, "a row filter may not read other tables (no subqueries)")
    return text


def _mapping(node: yaml.Node | None, source: str, place: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise _error(source, node, place, "must be a mapping")
    found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value in node.value:
        key = _text(key_node, source, place)
        if key in found:
            raise _error(source, key_node, f"{place}.{key}", "appears twice")
        found[key] = (key_node, value)
    return found


def _text(node: yaml.Node, source: str, place: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise _error(source, node, place, "must be a non-empty string")
    return str(node.value).strip()


def _error(source: str, node: Any, place: str, problem: str) -> DataPolicyError:
    mark = getattr(node, "start_mark", None)
    where = f"line {mark.line + 1}, " if mark is not None else ""
    return DataPolicyError(f"{source}: {where}{place}: {problem}")
