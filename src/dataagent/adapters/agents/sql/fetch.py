"""Reading a result within bounds: rows, bytes per result and per cell, one small batch at a time.

A result is measured as JSON-ish text (a string's UTF-8 bytes plus quotes, other values as written, a few
bytes per separator). A cell over the cell bound is cut (the kept text ends with `…`); a row that would take
the result over `max_bytes` is dropped and reading stops. The cell bound is the smaller of `max_cell_bytes`
and an equal share of `max_bytes` per column, so the first row always fits. Reading starts with one row per
batch and grows the batch while rows stay small, so at most a few rows the driver already read are held.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, CursorResult

from dataagent.adapters.agents.sql.results import QueryResult, json_safe

CUT_MARK = "…"
_SEPARATOR_BYTES = 3  # `", "` between two values
_MAX_BATCH = 64
Abandon = Callable[[Connection, CursorResult[Any]], None]


@dataclass(frozen=True, slots=True)
class ResultLimits:
    """DATAAGENT_SQL_MAX_ROWS, DATAAGENT_SQL_MAX_RESULT_BYTES and DATAAGENT_SQL_MAX_CELL_BYTES."""

    max_rows: int = 200
    max_bytes: int = 1024 * 1024
    max_cell_bytes: int = 64 * 1024

    def cell_bound(self, columns: int, header_bytes: int) -> int:
        share = (self.max_bytes - header_bytes) // max(columns, 1) - _SEPARATOR_BYTES - len(CUT_MARK.encode())
        return max(min(self.max_cell_bytes, share), 16)


def close_result(sync_conn: Connection, result: CursorResult[Any]) -> None:
    """Stop reading by closing the result (cheap on SQLite and PostgreSQL; MySQL reads the rest first)."""
    result.close()


def drop_connection(sync_conn: Connection, result: CursorResult[Any]) -> None:
    """Stop reading by dropping the connection: an unbuffered MySQL result is neither read to its end nor held."""
    sync_conn.invalidate()


def fetch_bounded(
    sync_conn: Connection, sql: str, limits: ResultLimits, abandon: Abandon = close_result
) -> QueryResult:
    """Execute `sql` as given (no bind parameters) and read it within `limits`; `abandon` stops an unread rest."""
    statement = sql.replace("%", "%%") if sync_conn.dialect.paramstyle in ("format", "pyformat") else sql
    result = sync_conn.exec_driver_sql(statement, execution_options={"stream_results": True})
    if not result.returns_rows:
        result.close()
        return QueryResult([], [], 0, False)
    try:
        return _read(sync_conn, result, limits, abandon)
    except BaseException:
        result.close()
        raise


def _read(sync_conn: Connection, result: CursorResult[Any], limits: ResultLimits, abandon: Abandon) -> QueryResult:
    columns = [str(key) for key in result.keys()]
    used = sum(_text_bytes(c) + _SEPARATOR_BYTES for c in columns)
    cell_bound = limits.cell_bound(len(columns), used)
    rows: list[list[Any]] = []
    cut = more = False
    batch = 1
    while not more:
        fetched = result.fetchmany(batch)
        if not fetched:
            result.close()
            return QueryResult(columns, rows, len(rows), cut, cut)
        largest = 0
        for raw in fetched:
            row, size, raw_size, cut_cells = _bounded_row(raw, cell_bound)
            largest = max(largest, raw_size)
            if len(rows) == limits.max_rows or used + size > limits.max_bytes:
                cut = cut or len(rows) < limits.max_rows
                more = True
                break
            rows.append(row)
            used += size
            cut = cut or cut_cells
        batch = min(batch * 2, _MAX_BATCH) if largest * batch * 2 <= cell_bound else 1
    abandon(sync_conn, result)
    return QueryResult(columns, rows, len(rows), True, cut)


def _bounded_row(raw: Any, cell_bound: int) -> tuple[list[Any], int, int, bool]:
    """The row's JSON-safe cells (long ones cut), its size as kept, its size as read (at least), and if cut."""
    cells: list[Any] = []
    size = raw_size = 0
    cut = False
    for value in raw:
        cell, kept, read, was_cut = _bounded_cell(value, cell_bound)
        cells.append(cell)
        cut = cut or was_cut
        size += kept + _SEPARATOR_BYTES
        raw_size += read
    return cells, size, raw_size, cut


def _bounded_cell(value: Any, bound: int) -> tuple[Any, int, int, bool]:
    """The JSON-safe cell cut to `bound` bytes, its size as kept, its size as read (at least), and if cut."""
    read = 0
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) > bound:
        read = len(value) + 2
        value = bytes(value[:bound])  # cut before decoding, so a huge blob is never copied as text
    safe = json_safe(value)
    if not isinstance(safe, str):
        size = len(str(safe))
        return safe, size, max(size, read), False
    kept, was_cut = _cut_text(safe, bound)
    size = _text_bytes(kept)
    return kept, size, max(read, len(safe) + 2, size), was_cut or read > 0


def _cut_text(text: str, bound: int) -> tuple[str, bool]:
    """`text` if it fits in `bound` UTF-8 bytes, else its longest prefix that does plus the cut mark; and if cut."""
    if len(text) <= bound // 4:  # no character takes more than 4 bytes: it fits
        return text, False
    encoded = text[: bound + 1].encode("utf-8", "surrogatepass")
    if len(encoded) <= bound and len(text) <= bound:
        return text, False
    return encoded[:bound].decode("utf-8", "ignore") + CUT_MARK, True


# JSON writes these escaped: a quote, a backslash and five controls in two bytes, the other controls in six
_ESCAPED = re.compile('[\x00-\x1f"\\\\]')
_SHORT_ESCAPES = frozenset('"\\\b\f\n\r\t')


def _text_bytes(text: str) -> int:
    """The string's size in the JSON answer: its UTF-8 bytes, its escapes and its quotes."""
    size = len(text.encode("utf-8", "surrogatepass")) + 2
    for char in _ESCAPED.findall(text):
        size += 1 if char in _SHORT_ESCAPES else 5
    return size
