"""A query's result as JSON-safe rows, with renderings for the client (table) and for an LLM (text)."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

_NOTE_RESERVE = 110  # room kept for the truncation note
_MIN_TEXT_CELL = 40
SIZE_NOTE = "truncated: the result was cut by size (DATAAGENT_SQL_MAX_RESULT_BYTES / _MAX_CELL_BYTES)"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """At most `max_rows` rows of a result; `row_count` is len(rows), `truncated` says more rows existed.

    `cut_by_size` says the result was cut by bytes (rows dropped and/or long values cut, see fetch.py).
    """

    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    cut_by_size: bool = False

    def table(self) -> dict[str, Any]:
        """The result as a JSON-safe table (the `table` of a tool result)."""
        return {
            "columns": list(self.columns),
            "rows": [list(row) for row in self.rows],
            "row_count": self.row_count,
            "truncated": self.truncated,
        }

    def as_text(self, max_chars: int = 4000) -> str:
        """A compact pipe-separated rendering (header, then rows) cut to about `max_chars` characters.

        A value longer than a fair share of `max_chars` per column is shortened (ending with …), so some rows
        always show; a result cut by size says so.
        """
        if not self.columns:
            return "(statement executed; no rows returned)"
        width = max(max_chars // (2 * len(self.columns)), _MIN_TEXT_CELL)
        lines = [" | ".join(_cell(c, width) for c in self.columns)]
        lines += [" | ".join(_cell(v, width) for v in row) for row in self.rows]
        footer = f"({self.row_count} row{'' if self.row_count == 1 else 's'})"
        if self.truncated:
            footer = f"(truncated: only the first {self.row_count} rows are shown)"
        if self.cut_by_size:
            footer = f"({SIZE_NOTE}; {self.row_count} rows are shown, long values end with …)"
        text = "\n".join([*lines, footer])
        if len(text) <= max_chars:
            return text
        budget = max(max_chars - _NOTE_RESERVE, 0)
        kept = [lines[0][:budget]]  # the header, always
        used = len(kept[0])
        for line in lines[1:]:
            if used + 1 + len(line) > budget:
                break
            kept.append(line)
            used += 1 + len(line)
        more = "+" if self.truncated else ""
        shown = len(kept) - 1
        note = f"(truncated: {shown} of {self.row_count}{more} rows shown, limited to {max_chars} chars)"
        if self.cut_by_size:
            note = f"({SIZE_NOTE}; {shown} of {self.row_count}+ rows shown, limited to {max_chars} chars)"
        return "\n".join([*kept, note])


def json_safe(value: Any) -> Any:
    """A value JSON can carry: dates as ISO text, decimals as floats, bytes as text (else base64)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        return json_safe(float(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    return str(value)


def _cell(value: Any, width: int) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else str(value)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("|", "\\|")
