"""Errors of the SQL tools. They are tool failures to report to the agent, not domain errors."""

from __future__ import annotations


class SqlToolError(Exception):
    """Base of every SQL tool error; the message is safe to show a user."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class SqlRefusedError(SqlToolError):
    """The statement was refused before reaching the database (e.g. a write on a read-only source)."""


class SqlExecutionError(SqlToolError):
    """The database (or its driver) rejected or failed the statement."""


class SqlUnknownTableError(SqlExecutionError):
    """A table that the database does not have was asked for."""


class SqlTimeoutError(SqlToolError):
    """The statement ran longer than the allowed time and was stopped."""
