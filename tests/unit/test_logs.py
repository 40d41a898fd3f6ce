"""The key mask and the line formats of entrypoints/logs.py, on real log records and uvicorn's own formatters."""

from __future__ import annotations

import asyncio
import json
import logging

from uvicorn.logging import AccessFormatter, DefaultFormatter

from dataagent.application import logcontext
from dataagent.entrypoints.logs import ContextFilter, JsonFormatter, RedactSecretsFilter, TextFormatter

SECRET = "UNITSECRET42"


def access_record(path: str) -> logging.LogRecord:
    """The record uvicorn's access logger makes: five arguments its AccessFormatter unpacks."""
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", path, "1.1", 200), None)


def masked(record: logging.LogRecord) -> logging.LogRecord:
    RedactSecretsFilter().filter(record)
    ContextFilter().filter(record)
    return record


def test_uvicorns_access_formatter_formats_a_masked_access_line_without_a_logging_error() -> None:
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(
        masked(access_record(f"/api/v1/sessions?probe=1&api_key={SECRET}")))
    assert line == '127.0.0.1:5000 - "GET /api/v1/sessions?probe=1&api_key=*** HTTP/1.1" 200 OK'


def test_a_percent_encoded_underscore_and_a_bytes_or_dict_argument_are_masked_too() -> None:
    record = masked(logging.LogRecord("uvicorn.asgi", 5, __file__, 1, "%s %r %s", (
        f"api%5Fkey={SECRET}", {"query_string": f"api_key={SECRET}".encode()}, 3), None))
    message = DefaultFormatter("%(message)s").format(record)
    assert SECRET not in message and message.count("***") == 2 and message.endswith(" 3")


def test_a_secret_in_the_message_itself_and_in_an_exception_never_reaches_the_line() -> None:
    try:
        raise ValueError(f"bad url ?api_key={SECRET}")
    except ValueError as exc:
        record = masked(logging.LogRecord("dataagent", logging.ERROR, __file__, 1, f"token={SECRET}", (),
                                          (type(exc), exc, exc.__traceback__)))
    for formatter in (TextFormatter(), JsonFormatter()):
        assert SECRET not in formatter.format(record)


def test_the_json_line_holds_the_fields_of_the_task_that_logged() -> None:
    async def run() -> logging.LogRecord:
        logcontext.bind(request_id="req-1", principal="alice")

        async def the_run_task() -> logging.LogRecord:  # inherits the request's fields, adds its own
            logcontext.bind(session_id="s1", run_id="run-1")
            return masked(logging.LogRecord("dataagent.runs", logging.WARNING, __file__, 1, "slow %s", ("db",),
                                            None))

        return await asyncio.create_task(the_run_task())

    entry = json.loads(JsonFormatter().format(asyncio.run(run())))
    assert {k: v for k, v in entry.items() if k != "time"} == {
        "level": "WARNING", "logger": "dataagent.runs", "message": "slow db", "request_id": "req-1",
        "session_id": "s1", "run_id": "run-1", "principal": "alice"}
    assert entry["time"].endswith("+00:00")
    assert logcontext.current() == dict.fromkeys(logcontext.FIELDS)  # nothing leaked out of the tasks


def test_the_text_line_is_time_level_logger_message() -> None:
    line = TextFormatter().format(masked(access_record("/x?api_key=" + SECRET)))
    assert line.endswith(' INFO uvicorn.access: 127.0.0.1:5000 - "GET /x?api_key=*** HTTP/1.1" 200'), line


def test_the_password_of_a_url_and_a_password_parameter_are_masked() -> None:
    record = masked(logging.LogRecord("dataagent", logging.ERROR, __file__, 1, "cannot use %s (%s)", (
        "mysql+asyncmy://app:p@ss/w#rd@db:3306/dataagent", "password=hunter2&x=1"), None))
    assert TextFormatter().format(record).endswith(
        "cannot use mysql+asyncmy://app:***@db:3306/dataagent (password=***&x=1)")
