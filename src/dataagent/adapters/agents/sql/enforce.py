"""A data policy applied to one parsed statement: refused outside the policy, else rewritten to run inside it.

Only a single query (SELECT, WITH, UNION/INTERSECT/EXCEPT) is accepted. Every reference to a real table, in any
scope (joins, CTE bodies, subqueries, UNION branches), is replaced by a derived table that reads only the
allowed columns and rows, under the alias it had (or its own name):

    SELECT o.id FROM orders AS o   ->   SELECT o.id FROM (SELECT id, status FROM orders WHERE region = 'north') AS o

so `SELECT *` means the allowed columns, and a column outside the policy that the static check could not see
does not exist for the database either. Refused: what sqlglot cannot parse, table functions, schema-qualified
names and system catalogs, a CTE named like a table, tables outside the policy, and columns outside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from dataagent.adapters.agents.sql.dialects import DialectLike
from dataagent.adapters.agents.sql.policy import PolicyEntry, TableRule

SYSTEM_SCHEMAS: frozenset[str] = frozenset(
    {"information_schema", "mysql", "performance_schema", "sys", "pg_catalog", "sqlite_temp", "temp"}
)
SYSTEM_TABLES: frozenset[str] = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master"})
_SOURCES: tuple[type[exp.Expr], ...] = (exp.Table, exp.Subquery, exp.Values)
# What a table reference may carry: the rewrite drops the rest (joins inside parentheses, PARTITION, samples,
# time travel, ...), which would change what the statement means, so they are refused.
_TABLE_ARGS = frozenset({"this", "alias", "db", "catalog", "hints", "indexed"})


class PolicyRefusal(Exception):
    """The statement is outside the data policy; the message says why (safe to tell the model)."""


@dataclass(frozen=True, slots=True)
class Schema:
    """The database's tables (as the database names them) and their columns."""

    tables: Mapping[str, tuple[str, ...]]

    def resolve(self, name: str) -> str | None:
        """The table `name` means: the exact name, else the only one equal ignoring case."""
        if name in self.tables:
            return name
        folded = [t for t in self.tables if t.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None


def allowed_columns(schema: Schema, table: str, rule: TableRule) -> list[str]:
    """The table's columns the rule lets be read, in the table's order."""
    return [c for c in schema.tables.get(table, ()) if rule.allows_column(c)]


def enforce(sql: str, dialect: DialectLike, entry: PolicyEntry, schema: Schema) -> str:
    """The statement as it will run under `entry`; PolicyRefusal with the reason when it is outside it."""
    statement = _single_query(sql, dialect)
    _refuse_sources(statement)
    ctes = _cte_names(statement, entry, schema)
    references = [(table, _resolve(table, entry, schema)) for table in _real_tables(statement, ctes)]
    _check_columns(statement, references, entry, schema, dialect)
    for table, actual in references:
        table.replace(_filtered(table, actual, entry, schema, dialect))
    return statement.sql(dialect=dialect, comments=False)


def _single_query(sql: str, dialect: DialectLike) -> exp.Query:
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotError:
        raise PolicyRefusal("the statement could not be parsed, and a data policy applies") from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise PolicyRefusal("under a data policy only a single SELECT query is allowed")
    return statements[0]


def _refuse_sources(statement: exp.Query) -> None:
    """Table functions and other row sources that are not tables, subqueries or VALUES."""
    for node in statement.walk():
        if isinstance(node, (exp.Command, exp.Unnest, exp.Lateral)):
            raise PolicyRefusal(f"{node.key.upper()} is not allowed under a data policy")
        if isinstance(node, exp.Table) and not isinstance(node.this, exp.Identifier):
            raise PolicyRefusal("table functions are not allowed under a data policy")
        if isinstance(node, exp.Table) and (extra := sorted({k for k, v in node.args.items() if v} - _TABLE_ARGS)):
            what = "parenthesized joins" if "joins" in extra else ", ".join(extra).upper()
            raise PolicyRefusal(f"{what} in a table reference: not supported under a data policy")
        if isinstance(node, (exp.From, exp.Join)) and not isinstance(node.this, _SOURCES):
            raise PolicyRefusal("only tables, subqueries and VALUES may be read under a data policy")


def _cte_names(statement: exp.Query, entry: PolicyEntry, schema: Schema) -> set[str]:
    names: set[str] = set()
    tables = {t.lower() for t in schema.tables} | set(entry.tables)
    for cte in statement.find_all(exp.CTE):
        name = cte.alias_or_name
        if name.lower() in tables or name.lower() in SYSTEM_TABLES:
            raise PolicyRefusal(f"a CTE may not be named like the table {name} under a data policy")
        names.add(name.lower())
    return names


def _real_tables(statement: exp.Query, ctes: set[str]) -> list[exp.Table]:
    """The references to real tables (a name that is a CTE's anywhere is not one: CTEs never shadow tables)."""
    return [
        t for t in statement.find_all(exp.Table)
        if t.args.get("db") or t.args.get("catalog") or t.name.lower() not in ctes
    ]


def _resolve(table: exp.Table, entry: PolicyEntry, schema: Schema) -> str:
    """The real table a reference names, if the policy allows it."""
    qualifiers = [part.lower() for part in (table.catalog, table.db) if part]
    if any(q in SYSTEM_SCHEMAS for q in qualifiers) or table.name.lower() in SYSTEM_TABLES:
        raise PolicyRefusal("system catalogs are not allowed under a data policy")
    if qualifiers:
        raise PolicyRefusal(f"schema-qualified names ({table.sql()}) are not allowed under a data policy")
    actual = schema.resolve(table.name)
    if actual is None or entry.rule(actual) is None:
        allowed = ", ".join(sorted(entry.tables)) or "none"
        raise PolicyRefusal(f"the data policy does not allow the table {table.name} (allowed tables: {allowed})")
    return actual


def _check_columns(
    statement: exp.Query, references: Iterable[tuple[exp.Table, str]], entry: PolicyEntry, schema: Schema,
    dialect: DialectLike,
) -> None:
    """Refuse a column outside the policy, when sqlglot can resolve the columns (the rewrite holds anyway)."""
    used = {actual for _, actual in references}
    full: dict[str, object] = {t: {c: "text" for c in schema.tables[t]} for t in used}
    allowed: dict[str, object] = {t: {c: "text" for c in allowed_columns(schema, t, _rule(entry, t))} for t in used}
    if _qualifies(statement, references, full, dialect) and not _qualifies(statement, references, allowed, dialect):
        lists = {t: ", ".join(allowed_columns(schema, t, _rule(entry, t))) or "none" for t in sorted(used)}
        shown = "; ".join(f"{t}: {names}" for t, names in lists.items())
        raise PolicyRefusal(f"the statement reads a column the data policy does not allow (allowed columns: {shown})")


def _qualifies(
    statement: exp.Query, references: Iterable[tuple[exp.Table, str]], schema: dict[str, object],
    dialect: DialectLike,
) -> bool:
    """Whether every column resolves against `schema` (the references renamed to their real tables)."""
    renamed = {id(table): actual for table, actual in references}
    copy = statement.copy()
    for original, twin in zip(list(statement.walk()), list(copy.walk()), strict=True):
        if id(original) in renamed and isinstance(twin, exp.Table):
            alias = twin.args.get("alias") or exp.TableAlias(this=twin.this.copy())
            twin.set("this", exp.to_identifier(renamed[id(original)], quoted=True))
            twin.set("alias", alias)
    try:
        qualify(copy, schema=schema, dialect=dialect, validate_qualify_columns=True,
                quote_identifiers=False)
    except (OptimizeError, SqlglotError, KeyError, ValueError):
        return False
    return True


def _rule(entry: PolicyEntry, table: str) -> TableRule:
    rule = entry.rule(table)
    assert rule is not None  # _resolve refused the tables without one
    return rule


def _filtered(table: exp.Table, actual: str, entry: PolicyEntry, schema: Schema, dialect: DialectLike) -> exp.Subquery:
    """The derived table that replaces a reference: the allowed columns, the allowed rows, the same alias."""
    rule = _rule(entry, actual)
    columns = allowed_columns(schema, actual, rule)
    if not columns:
        raise PolicyRefusal(f"the data policy allows no column of the table {actual}")
    inner = exp.select(*(exp.column(c, quoted=True) for c in columns)).from_(
        exp.Table(this=exp.to_identifier(actual, quoted=True)))
    if rule.rows is not None:
        try:
            inner = inner.where(sqlglot.condition(rule.rows, dialect=dialect))
        except SqlglotError:
            raise PolicyRefusal(f"the data policy's row filter of {actual} cannot be read in this dialect") from None
    alias = table.args.get("alias") or exp.TableAlias(this=table.this.copy())
    return exp.Subquery(this=inner, alias=alias.copy())
