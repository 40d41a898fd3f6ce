"""Static analysis of a SQL text with sqlglot: statement type, tables touched, and whether it only reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import Token, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError, TokenError

from dataagent.adapters.agents.sql.dialects import DialectLike
from dataagent.adapters.agents.sql.guard import refusal_reason

# Functions with side effects, or that reach files, locks, other servers or other sessions.
SIDE_EFFECT_FUNCTIONS: frozenset[str] = frozenset(
    {
        # MySQL / MariaDB
        "sleep", "benchmark", "load_file", "get_lock", "release_lock", "release_all_locks",
        "master_pos_wait", "source_pos_wait", "sys_exec", "sys_eval",
        # PostgreSQL
        "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file",
        "pg_stat_file", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_rotate_logfile", "pg_notify", "set_config", "nextval", "setval", "query_to_xml",
        "query_to_xml_and_xmlschema", "query_to_xmlschema", "txid_current", "pg_current_xact_id",
        "pg_switch_wal", "pg_create_restore_point",
        # SQLite (fileio / extension loading)
        "writefile", "readfile", "load_extension", "edit", "fts3_tokenizer",
        # SQL Server
        "xp_cmdshell", "openrowset", "opendatasource",
    }
)
SIDE_EFFECT_PREFIXES: tuple[str, ...] = (
    "lo_", "dblink", "pg_advisory", "pg_try_advisory", "pg_ls_", "pg_file_", "pg_logical_emit",
    "pg_replication_", "pg_drop_", "pg_create_",
)

_QUERY_ROOTS: tuple[type[exp.Expr], ...] = (exp.Query, exp.Values)
_WRITE_NODES: tuple[type[exp.Expr], ...] = tuple(
    node
    for node in (
        getattr(exp, name, None)
        for name in (
            "DML", "DDL", "Drop", "Alter", "TruncateTable", "LoadData", "Command", "Into", "Lock",
            "NextValueFor", "Set", "Pragma", "Attach", "Detach", "Kill", "Transaction", "Commit",
            "Rollback", "Grant", "Revoke", "Use", "Analyze", "Comment", "Cache", "Uncache", "Refresh",
            "Install", "Export", "Declare", "Execute",
        )
    )
    if isinstance(node, type)
)
_READ_COMMANDS = frozenset({"SHOW"})
_EXPLAIN_COMMANDS = frozenset({"EXPLAIN", "DESCRIBE", "DESC"})
_EXPLAIN_OPTION = re.compile(
    r"^\s*(?:ANALYZE\b|ANALYSE\b|VERBOSE\b|EXTENDED\b|PARTITIONS\b|QUERY\s+PLAN\b|PLAN\b|"
    r"FORMAT\s*=\s*\w+|\([^()]*\))",
    re.IGNORECASE,
)
_FILE_TARGETS = frozenset({"OUTFILE", "DUMPFILE"})
_FILE_REASON = "it writes to a file (INTO OUTFILE/DUMPFILE)"
_TYPE_NAMES: dict[type[exp.Expr], str] = {
    exp.Query: "SELECT", exp.Values: "SELECT", exp.Insert: "INSERT", exp.Update: "UPDATE",
    exp.Delete: "DELETE", exp.Merge: "MERGE", exp.Create: "CREATE", exp.Drop: "DROP", exp.Alter: "ALTER",
    exp.TruncateTable: "TRUNCATE", exp.Show: "SHOW", exp.Describe: "DESCRIBE", exp.Set: "SET",
    exp.Pragma: "PRAGMA", exp.Use: "USE", exp.Transaction: "BEGIN", exp.Commit: "COMMIT",
    exp.Rollback: "ROLLBACK", exp.Grant: "GRANT", exp.Revoke: "REVOKE", exp.Analyze: "ANALYZE",
    exp.Attach: "ATTACH", exp.Detach: "DETACH", exp.Copy: "COPY", exp.LoadData: "LOAD",
}


@dataclass(frozen=True, slots=True)
class SqlAnalysis:
    """What a SQL text does. `reason` says why it is not read-only (None when it is).

    `refusal` (then also `reason`) says why it is refused outright, whatever the settings (see guard.py), or
    by the data policy `policy` (scope.py), which else sets `executed_sql`.
    """

    sql: str
    statement_type: str
    read_only: bool
    tables: tuple[str, ...]
    statement_count: int
    error: str | None = None
    reason: str | None = None
    refusal: str | None = None
    executed_sql: str | None = None  # the statement as it will run under a data policy (scope.py)
    policy: str | None = None  # the data policy entry that applies

    def as_args(self) -> dict[str, Any]:
        """The keys that go into an approval action's args."""
        args: dict[str, Any] = {
            "sql": self.sql,
            "statement_type": self.statement_type,
            "read_only": self.read_only,
            "tables": list(self.tables),
        }
        if self.policy is not None:
            args.update(policy=self.policy, executed_sql=self.executed_sql)
        return args


def analyze_sql(sql: str, dialect: DialectLike = None) -> SqlAnalysis:
    """Parse `sql` with sqlglot (in `dialect`, e.g. "sqlite", "mysql", "postgres") and classify it.

    For MySQL pass the dialect of the server's quoting mode (`dialects.quoting_dialect`).
    """
    tokens = _tokens(sql, dialect)
    try:
        statements = _statements(sql, dialect)
    except SqlglotError as exc:
        analysis = _unparsable(sql, tokens, exc)
    else:
        analysis = _classify(sql, dialect, tokens or [], statements)
    if refusal := refusal_reason(sql, tokens, statements if analysis.error is None else []):
        return SqlAnalysis(sql, analysis.statement_type, False, analysis.tables, analysis.statement_count,
                           analysis.error, refusal, refusal)
    return analysis


def _unparsable(sql: str, tokens: list[Token] | None, exc: SqlglotError) -> SqlAnalysis:
    message = _parse_error_text(exc)
    reason = _FILE_REASON if tokens and _writes_to_file(tokens) else f"the SQL could not be parsed: {message}"
    return SqlAnalysis(sql, "UNKNOWN", False, (), 0, message, reason)


def _classify(sql: str, dialect: DialectLike, tokens: list[Token], statements: list[exp.Expr]) -> SqlAnalysis:
    if not statements:
        return SqlAnalysis(sql, "UNKNOWN", False, (), 0, "no SQL statement", "there is no SQL statement")
    tables = tuple(sorted({name for statement in statements for name in _tables(statement)}))
    if len(statements) > 1:
        reason = f"{len(statements)} statements were given; only one is allowed"
        return SqlAnalysis(sql, "MULTIPLE", False, tables, len(statements), None, reason)
    statement = statements[0]
    kind = _statement_type(statement, sql, dialect)
    if isinstance(statement, exp.Command) and kind in _EXPLAIN_COMMANDS:
        return _analyze_explain(sql, statement, dialect)
    why = _FILE_REASON if _writes_to_file(tokens) else _write_reason(statement, kind)
    return SqlAnalysis(sql, kind, why is None, tables, 1, None, why)


def needs_approval(analysis: SqlAnalysis, policy: str) -> bool:
    """Whether the statement needs a human's approval under DATAAGENT_HITL_POLICY (always|writes|never)."""
    match policy.strip().lower():
        case "always":
            return True
        case "writes":
            return not analysis.read_only
        case "never":
            return False
    raise ValueError(f"unknown HITL policy {policy!r}; expected always, writes or never")


def _analyze_explain(sql: str, statement: exp.Command, dialect: DialectLike) -> SqlAnalysis:
    """EXPLAIN/DESCRIBE that sqlglot kept as a command: analyze the explained statement itself."""
    inner_text = statement.expression.name if isinstance(statement.expression, exp.Expression) else ""
    while match := _EXPLAIN_OPTION.match(inner_text):
        inner_text = inner_text[match.end() :]
    if not inner_text.strip():
        return SqlAnalysis(sql, "EXPLAIN", False, (), 1, None, "EXPLAIN without a statement")
    inner = analyze_sql(inner_text, dialect)
    reason = None if inner.read_only else f"the explained statement is not read-only: {inner.reason}"
    return SqlAnalysis(sql, "EXPLAIN", inner.read_only, inner.tables, 1, inner.error, reason)


def _statement_type(statement: exp.Expr, sql: str, dialect: DialectLike) -> str:
    if isinstance(statement, exp.Command):
        return str(statement.this).split()[0].upper() if statement.this else "UNKNOWN"
    if isinstance(statement, exp.Describe) and sql.lstrip().upper().startswith("EXPLAIN"):
        return "EXPLAIN"
    for node_type, name in _TYPE_NAMES.items():
        if isinstance(statement, node_type):
            return name
    return type(statement).__name__.upper()


def _write_reason(statement: exp.Expr, kind: str) -> str | None:
    """None if the single parsed statement only reads, else why not."""
    if isinstance(statement, exp.Command):
        return None if kind in _READ_COMMANDS else f"{kind} statements are not read-only"
    if not isinstance(statement, (*_QUERY_ROOTS, exp.Show, exp.Describe)):
        return f"{kind} statements are not read-only"
    for node in statement.walk():
        if isinstance(node, exp.Into):
            return "SELECT ... INTO writes its result"
        if isinstance(node, exp.Lock):
            return "locking clauses (FOR UPDATE/FOR SHARE) are not allowed"
        if isinstance(node, exp.PropertyEQ) and isinstance(node.this, exp.Parameter):
            return "it assigns a user variable (:=)"
        if isinstance(node, _WRITE_NODES):
            return f"it contains a {_statement_type(node, '', None)} statement"
        if isinstance(node, exp.Func) and (name := _side_effect_function(node)):
            return f"it calls {name}(), which has side effects"
    return None


def _side_effect_function(node: exp.Func) -> str | None:
    names = {node.sql_name().lower()}
    if isinstance(node, exp.Anonymous):
        names.add(node.name.lower())
    for name in names:
        if name in SIDE_EFFECT_FUNCTIONS or name.startswith(SIDE_EFFECT_PREFIXES):
            return name
    return None


def _tables(statement: exp.Expr) -> set[str]:
    """Names of the real tables a statement touches (CTE names left out), qualified as written."""
    cte_names = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    names: set[str] = set()
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or not table.name:
            continue
        if not table.db and table.name.lower() in cte_names:
            continue
        names.add(".".join(part for part in (table.catalog, table.db, table.name) if part))
    return names


def _statements(sql: str, dialect: DialectLike) -> list[exp.Expr]:
    return [s for s in sqlglot.parse(sql, read=dialect) if s is not None]


def _tokens(sql: str, dialect: DialectLike) -> list[Token] | None:
    """sqlglot's tokens of `sql` (comments attached to them), or None if it cannot be tokenized."""
    try:
        return Dialect.get_or_raise(dialect).tokenize(sql)
    except TokenError:
        return None


def _writes_to_file(tokens: list[Token]) -> bool:
    """Whether the tokens (strings and comments excluded) hold INTO OUTFILE or INTO DUMPFILE."""
    return any(
        prev.token_type is sqlglot.TokenType.INTO and tok.text.upper() in _FILE_TARGETS
        for prev, tok in zip(tokens, tokens[1:], strict=False)
    )


def _parse_error_text(exc: SqlglotError) -> str:
    """The parser's message on one line, without the terminal colour codes sqlglot puts in."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return " ".join(text.split())[:500]
