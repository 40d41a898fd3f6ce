"""A statement's cost as the database's own planner sees it, read before the statement is approved.

MySQL/MariaDB `EXPLAIN FORMAT=JSON`, PostgreSQL `EXPLAIN (FORMAT JSON)`, SQLite `EXPLAIN QUERY PLAN`; none
of them runs the statement. `rows` is the planner's estimate of the most rows one step of the plan handles:
PostgreSQL's largest `Plan Rows` (a join node's estimate included) or size (`pg_class.reltuples`, known once
the table was analysed) of a sequentially scanned table, MySQL/MariaDB's largest product of the
rows read per table in one query block; SQLite's planner gives no row counts, so `rows` there is the size
(its largest rowid) of the fully scanned tables, multiplied when they are nested. `full_scans` names the
tables read from end to end (a sequential scan, MySQL access type ALL or a full index scan, SQLite SCAN).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlglot import exp

log = logging.getLogger(__name__)

EXPLAINABLE = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
_PREFIX = {"mysql": "EXPLAIN FORMAT=JSON ", "postgres": "EXPLAIN (FORMAT JSON) ", "sqlite": "EXPLAIN QUERY PLAN "}
_FULL_ACCESS = frozenset({"ALL", "index"})
_SQLITE_SCAN = re.compile(r"^SCAN (?:TABLE )?(\S+)(?: AS (\S+))?")
_MAX_ROWS = 10**18
Runner = Callable[[Callable[[AsyncConnection, Any], Awaitable["Estimate"]]], Awaitable["Estimate"]]


@dataclass(frozen=True, slots=True)
class Estimate:
    """The planner's estimate; `unavailable` says why there is none (then the other fields are empty)."""

    rows: int | None = None
    full_scans: tuple[str, ...] = ()
    source: str = ""
    unavailable: str | None = None

    def as_args(self) -> dict[str, Any]:
        """The `estimate` of the hitl event's args (PROTOCOL.md)."""
        if self.unavailable is not None:
            return {"available": False, "reason": self.unavailable}
        return {"available": True, "rows": self.rows, "full_scans": list(self.full_scans), "source": self.source}

    def over(self, limit: int | None) -> bool:
        return limit is not None and self.rows is not None and self.rows > limit


def unavailable(reason: str) -> Estimate:
    return Estimate(unavailable=reason)


async def estimate_cost(run: Runner, dialect: str, sql: str, statement_type: str) -> Estimate:
    """Run the dialect's EXPLAIN through `run` (the database's bounded read-only runner); never raises."""
    prefix = _PREFIX.get(dialect)
    if prefix is None:
        return unavailable(f"no estimate for {dialect} databases")
    if statement_type not in EXPLAINABLE:
        return unavailable(f"no estimate for {statement_type} statements")

    async def work(conn: AsyncConnection, _: Any) -> Estimate:
        statement = prefix + sql
        if conn.dialect.paramstyle in ("format", "pyformat"):
            statement = statement.replace("%", "%%")
        rows = (await conn.exec_driver_sql(statement)).all()
        if dialect == "sqlite":
            return await _sqlite(conn, [str(r[-1]) for r in rows], sql)
        document = _json(rows[0][0])
        if dialect == "postgres":
            return await _with_table_sizes(conn, _postgres(document))
        return _mysql(document, sql)

    try:
        return await run(work)
    except Exception as exc:  # a failing or slow EXPLAIN never blocks the question
        log.info("no estimate for a statement: %s", exc)
        return unavailable(str(exc).split("\n")[0][:300] or type(exc).__name__)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _postgres(document: Any) -> Estimate:
    root = document[0]["Plan"]
    most, scans = 0.0, []
    stack = [root]
    while stack:
        node = stack.pop()
        most = max(most, float(node.get("Plan Rows", 0)))
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name"):
            scans.append(str(node["Relation Name"]))
        stack += node.get("Plans", [])
    return Estimate(_bounded(most), _unique(scans), "EXPLAIN (FORMAT JSON)")


async def _with_table_sizes(conn: AsyncConnection, estimate: Estimate) -> Estimate:
    """A sequential scan reads its whole table: its size (pg_class.reltuples, known once analysed) counts."""
    sizes = [estimate.rows or 0]
    for table in estimate.full_scans:
        literal = "'" + table.replace("'", "''") + "'"
        found = (await conn.exec_driver_sql(
            f"SELECT reltuples FROM pg_class WHERE oid = to_regclass(quote_ident({literal}))")).scalar()
        sizes.append(_bounded(float(found or 0)))
    return Estimate(max(sizes), estimate.full_scans, estimate.source)


def _mysql(document: dict[str, Any], sql: str) -> Estimate:
    blocks: list[list[dict[str, Any]]] = []
    _mysql_tables(document, blocks, [])
    names = _table_names(sql, "mysql")
    scans = [
        names.get(str(t["table_name"]), str(t["table_name"]))
        for block in blocks for t in block if t.get("access_type") in _FULL_ACCESS
    ]
    products = [math.prod(float(t.get("rows", t.get("rows_examined_per_scan", 1))) for t in b) for b in blocks]
    return Estimate(_bounded(max(products, default=0)), _unique(scans), "EXPLAIN FORMAT=JSON")


def _mysql_tables(node: Any, blocks: list[list[dict[str, Any]]], current: list[dict[str, Any]]) -> None:
    """The tables of each query block (its nested loop), walking derived tables and subqueries as blocks."""
    if isinstance(node, list):
        for item in node:
            _mysql_tables(item, blocks, current)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "query_block":
            block: list[dict[str, Any]] = []
            blocks.append(block)
            _mysql_tables(value, blocks, block)
        elif key == "table" and isinstance(value, dict) and "table_name" in value:
            current.append(value)
            _mysql_tables({k: v for k, v in value.items() if k != "table_name"}, blocks, current)
        else:
            _mysql_tables(value, blocks, current)


async def _sqlite(conn: AsyncConnection, details: list[str], sql: str) -> Estimate:
    names = _table_names(sql, "sqlite")
    scans = []
    for detail in details:
        match = _SQLITE_SCAN.match(detail)
        if match and match.group(1) in names:
            scans.append(names[match.group(1)])
    sizes = []
    for table in _unique(scans):
        quoted = '"' + table.replace('"', '""') + '"'
        try:
            sizes.append(float((await conn.exec_driver_sql(f"SELECT MAX(rowid) FROM {quoted}")).scalar() or 0))
        except Exception:  # a view or a WITHOUT ROWID table: its size is not known cheaply
            return Estimate(None, _unique(scans), "EXPLAIN QUERY PLAN")
    rows = _bounded(math.prod(sizes)) if sizes else None
    return Estimate(rows, _unique(scans), "EXPLAIN QUERY PLAN")


def _table_names(sql: str, dialect: str) -> dict[str, str]:
    """Each name a plan may show for a database table of `sql` (its alias or name) -> the table's name."""
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:
        return {}
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        if table.name and table.name not in ctes:
            found[table.alias_or_name] = table.name
            found.setdefault(table.name, table.name)
    return found


def _unique(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _bounded(value: float) -> int:
    return int(min(max(value, 0), _MAX_ROWS))
