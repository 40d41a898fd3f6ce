"""sqlglot dialects that quote as the MySQL server really does: its `sql_mode` decides what a quote means.

With NO_BACKSLASH_ESCAPES a backslash does not escape a quote (`'a\\'` is the string `a\\`); with ANSI_QUOTES a
double quote delimits an identifier, not a string. Analysing in the wrong mode lets a statement hide in what
the analysis takes for a string literal, so the analysis uses the mode the data connection reports.
"""

from __future__ import annotations

from sqlglot.dialects.dialect import Dialect
from sqlglot.dialects.mysql import MySQL

DialectLike = str | type[Dialect] | None


class MySQLNoBackslashEscapes(MySQL):
    """MySQL with sql_mode NO_BACKSLASH_ESCAPES: only a doubled quote escapes a quote."""

    class Tokenizer(MySQL.Tokenizer):
        STRING_ESCAPES = ["'", '"']


class MySQLAnsiQuotes(MySQL):
    """MySQL with sql_mode ANSI_QUOTES (also part of ANSI): "..." is an identifier."""

    class Tokenizer(MySQL.Tokenizer):
        QUOTES = ["'"]
        IDENTIFIERS = ["`", '"']


class MySQLAnsiQuotesNoBackslashEscapes(MySQLAnsiQuotes):
    """Both ANSI_QUOTES and NO_BACKSLASH_ESCAPES."""

    class Tokenizer(MySQLAnsiQuotes.Tokenizer):
        STRING_ESCAPES = ["'"]


_MYSQL_MODES: dict[tuple[bool, bool], type[Dialect]] = {
    (True, False): MySQLNoBackslashEscapes,
    (False, True): MySQLAnsiQuotes,
    (True, True): MySQLAnsiQuotesNoBackslashEscapes,
}


def quoting_dialect(dialect: str, sql_mode: str | None) -> DialectLike:
    """The dialect to analyse `dialect` SQL in, given the server's sql_mode (None: unknown, the default mode)."""
    if dialect != "mysql" or not sql_mode:
        return dialect
    flags = {flag.strip().upper() for flag in sql_mode.split(",")}
    key = ("NO_BACKSLASH_ESCAPES" in flags, "ANSI_QUOTES" in flags or "ANSI" in flags)
    return _MYSQL_MODES.get(key, dialect)
