"""What a log line is about: the request, session, run and principal of the task that writes it.

Context variables, set where each becomes known (the HTTP middleware, the key check, the WebSocket connection,
the run task; a task started from another inherits its values) and read by the log formatters.
"""

from __future__ import annotations

from contextvars import ContextVar

FIELDS = ("request_id", "session_id", "run_id", "principal")
_VALUES: dict[str, ContextVar[str | None]] = {name: ContextVar(f"dataagent_log_{name}", default=None)
                                               for name in FIELDS}


def bind(**values: str | None) -> None:
    """Set some of FIELDS for the current task (and the tasks it starts from now on)."""
    for name, value in values.items():
        _VALUES[name].set(value)


def current() -> dict[str, str | None]:
    """Every field of FIELDS, None where unset."""
    return {name: var.get() for name, var in _VALUES.items()}
