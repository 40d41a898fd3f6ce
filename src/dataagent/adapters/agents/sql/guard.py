"""What is refused outright, in every dialect and also with DATAAGENT_SQL_READ_ONLY=false, before any approval.

- executable comments `/*! ... */`, `/*!50001 ... */`, `/*M! ... */`: MySQL/MariaDB run their content, which the
  analysis reads as a comment (optimizer hints `/*+ ... */` stay allowed);
- transaction control (BEGIN, START, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, XA, END, ABORT) and SET in any form,
  anywhere in the text: they would change what the read-only transaction or the next statement means;
- SHOW forms that reveal accounts, other sessions or the replication stream (`REVEALING_SHOW_WORDS`);
- any reference to the system schemas `mysql`, `performance_schema`, `sys`, and to information_schema's account
  and session tables (`ACCOUNT_TABLES`), quoted or not, in any case.

The checks read sqlglot's tokens in the server's quoting mode (strings are never looked into). A `/*!` or
`/*M!` is refused wherever it is not inside a string literal or a quoted name, so also inside an ordinary
comment (a harmless false positive); when the text cannot be tokenized at all, anywhere.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence

from sqlglot import Token, TokenType, exp

SYSTEM_SCHEMAS: frozenset[str] = frozenset({"mysql", "performance_schema", "sys"})
ACCOUNT_TABLES: frozenset[str] = frozenset({
    "user_privileges", "schema_privileges", "table_privileges", "column_privileges", "applicable_roles",
    "enabled_roles", "administrable_role_authorizations", "role_table_grants", "role_column_grants",
    "role_routine_grants", "user_attributes", "processlist", "user_statistics", "client_statistics",
    "innodb_trx", "innodb_locks", "innodb_lock_waits", "metadata_lock_info", "user_variables",
})
# PostgreSQL's catalogs of roles, passwords and other sessions, refused wherever they are named.
POSTGRES_ACCOUNT_TABLES: frozenset[str] = frozenset({
    "pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_stat_activity", "pg_roles", "pg_user",
})
REVEALING_SHOW_WORDS: frozenset[str] = frozenset({
    "GRANTS", "PROCESSLIST", "PRIVILEGES", "ENGINE", "USER_STATISTICS", "CLIENT_STATISTICS", "EXPLAIN",
    "ANALYZE", "SLAVE", "SLAVES", "REPLICA", "REPLICAS", "MASTER", "BINARY", "BINLOG", "RELAYLOG",
})
TRANSACTION_WORDS: frozenset[str] = frozenset({
    "BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "XA", "END", "ABORT",
})
_EXECUTABLE_MARK = re.compile(r"/\*M?!", re.IGNORECASE)
_TRANSACTION_NODES: tuple[type[exp.Expr], ...] = (exp.Transaction, exp.Commit, exp.Rollback)
_NOT_NAMES = frozenset({TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.HEX_STRING, TokenType.BIT_STRING})

EXECUTABLE_COMMENT = (
    "executable comments (/*! ... */, /*M! ... */) are not allowed: MySQL and MariaDB run their content, "
    "which this check cannot see"
)


def refusal_reason(sql: str, tokens: Sequence[Token] | None, statements: Sequence[exp.Expr]) -> str | None:
    """Why `sql` is refused outright, or None. `tokens` is None when the text could not be tokenized."""
    if _executable_comment(sql, tokens):
        return EXECUTABLE_COMMENT
    if tokens is None:
        return None
    for words in _split(tokens):
        for check in (_transaction_or_set, _revealing_show, _system_object):
            if reason := check(words):
                return reason
    return _in_tree(statements)


def _executable_comment(sql: str, tokens: Sequence[Token] | None) -> bool:
    """A `/*!` or `/*M!` outside every token (strings and quoted names are tokens; comments are not)."""
    starts = [token.start for token in tokens or ()]
    for mark in _EXECUTABLE_MARK.finditer(sql):
        at = bisect.bisect_right(starts, mark.start()) - 1
        if tokens is None or at < 0 or tokens[at].end < mark.start():
            return True
    return False


def _transaction_or_set(tokens: Sequence[Token]) -> str | None:
    word = tokens[0].text.upper()
    if word in TRANSACTION_WORDS:
        return f"transaction control ({word}) is not allowed"
    if word == "SET":
        return "SET statements are not allowed (they change the session)"
    for token in tokens:
        if token.token_type in (TokenType.COMMIT, TokenType.ROLLBACK):
            return f"transaction control ({token.text.upper()}) is not allowed"
    return None


def _revealing_show(tokens: Sequence[Token]) -> str | None:
    first = tokens[0].text.upper()
    words = [t.text.upper() for t in tokens[1:5] if t.token_type not in _NOT_NAMES]
    if first == "SHOW" and (set(words[:3]) & REVEALING_SHOW_WORDS or words[:2] == ["CREATE", "USER"]):
        return f"SHOW {' '.join(words[:2])} is not allowed: it reveals accounts or other sessions"
    if first in ("EXPLAIN", "DESC", "DESCRIBE") and "FOR" in words[:2] and "CONNECTION" in words[:3]:
        return "EXPLAIN FOR CONNECTION is not allowed: it reveals other sessions"
    return None


def _system_object(tokens: Sequence[Token]) -> str | None:
    shows = tokens[0].text.upper() in ("SHOW", "USE")
    for index, token in enumerate(tokens):
        if token.token_type in _NOT_NAMES:
            continue
        name = token.text.lower()
        dotted = index + 1 < len(tokens) and tokens[index + 1].token_type is TokenType.DOT
        named = shows and index > 0 and tokens[index - 1].text.upper() in ("FROM", "IN", "USE")
        if name in SYSTEM_SCHEMAS and (dotted or named):
            return f"the system schema {name} is not allowed"
        if name == "information_schema" and dotted and index + 2 < len(tokens):
            table = tokens[index + 2].text.lower()
            if table in ACCOUNT_TABLES:
                return f"information_schema.{table.upper()} is not allowed: it reveals accounts or other sessions"
        if name in POSTGRES_ACCOUNT_TABLES and not dotted:
            return f"{name} is not allowed: it reveals accounts or other sessions"
    return None


def _in_tree(statements: Sequence[exp.Expr]) -> str | None:
    """What the tokens may miss: a SET or transaction node nested in a parsed statement."""
    for statement in statements:
        for node in statement.walk():
            if isinstance(node, exp.Set):
                return "SET statements are not allowed (they change the session)"
            if isinstance(node, _TRANSACTION_NODES):
                return "transaction control is not allowed"
    return None


def _split(tokens: Sequence[Token]) -> Iterator[Sequence[Token]]:
    """The tokens of each statement (split at semicolons), empty statements left out."""
    start = 0
    for index, token in enumerate([*tokens, None]):
        if token is None or token.token_type is TokenType.SEMICOLON:
            if index > start:
                yield tokens[start:index]
            start = index + 1
