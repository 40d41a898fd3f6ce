"""Logging: one configuration for every start form (`dataagent-server`, its workers, `uvicorn ...:app`), the
readable or JSON line format, the request/session/run/principal of each line, and the filters that keep API
keys (and passwords) out of every log line."""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dataagent.application import logcontext

# `api_key=`, also with its underscore percent-encoded (`api%5Fkey=`), as Starlette decodes both
_SECRET_QUERY = re.compile(r"((?:api(?:_|%5f)key|apikey|token|password)=)[^&\s\"'\\]+", re.IGNORECASE)
# the password of a URL (`mysql://user:password@host/db`)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)\S+@", re.IGNORECASE)  # to the last @: raw @ too
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "dataagent")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", _SECRET_QUERY.sub(r"\1***", text))


class _Redacted:
    """An argument shown with its secrets masked, by `%s` and by `%r` alike."""

    __slots__ = ("_str", "_repr")

    def __init__(self, value: object) -> None:
        self._str, self._repr = redact(str(value)), redact(repr(value))

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return self._repr


def _clean_arg(value: object) -> object:
    if isinstance(value, int | float | type(None)):
        return value  # `%d` and `%.1f` need the number itself; no number holds a key
    if isinstance(value, str):
        return redact(value)
    return _Redacted(value) if redact(str(value)) != str(value) or redact(repr(value)) != repr(value) else value


class RedactSecretsFilter(logging.Filter):
    """Rewrites `api_key=...` to `api_key=***` in a record's message and in each of its arguments, keeping the
    arguments' shape: uvicorn's access formatter unpacks them (a tuple of five), so they must stay a tuple."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean_arg(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _clean_arg(v) for k, v in args.items()}
        return True


class ExplainedErrorFilter(logging.Filter):
    """uvicorn logs a failed start-up as a whole traceback; when it ends in one of our own errors
    (e.g. `StoreUnavailableError: cannot use MySQL at db:3306/dataagent: ...`), that line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback (most recent call last)"):
            last = message.rstrip().rsplit("\n", 1)[-1]
            if last.startswith("dataagent.") and "Error: " in last:
                record.msg, record.args, record.exc_info, record.exc_text = last, (), None, None
        return True


class ContextFilter(logging.Filter):
    """Stamps the record with the request, session, run and principal of the task that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The readable default: `time LEVEL logger: message`; whatever it prints passes the key mask last."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, session_id, run_id,
    principal, and `exception` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for name in logcontext.FIELDS:
            entry[name] = getattr(record, name, None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, ensure_ascii=False, default=str))


def stream_handler() -> logging.Handler:
    """The one handler (standard error); Python warnings are logged through it too, with time and level."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stderr)


def logging_config(level: str, fmt: str = "text", access_log: bool = True) -> dict[str, Any]:
    """The `logging.config.dictConfig` of every start form; uvicorn applies it in each worker too."""
    numeric = _numeric(level)
    loggers: dict[str, Any] = {
        name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi")
    }
    loggers["uvicorn.access"] = {"handlers": [], "propagate": access_log}
    loggers["dataagent"] = {"level": numeric}
    loggers["sqlglot"] = {"level": logging.ERROR}  # it warns on every non-SQL command it falls back on
    return {
        "version": 1, "disable_existing_loggers": False,
        "filters": {
            "explained": {"()": f"{__name__}.ExplainedErrorFilter"},
            "redact": {"()": f"{__name__}.RedactSecretsFilter"},
            "context": {"()": f"{__name__}.ContextFilter"},
        },
        "formatters": {
            "text": {"()": f"{__name__}.TextFormatter"},
            "json": {"()": f"{__name__}.JsonFormatter"},
        },
        "handlers": {
            "default": {"()": f"{__name__}.stream_handler", "formatter": fmt,
                        "filters": ["explained", "redact", "context"]},
        },
        "loggers": loggers,
        "root": {"level": numeric, "handlers": ["default"]},
    }


def install_redaction() -> None:
    """Attach the key filters to uvicorn's and our loggers and to their handlers (idempotent): for a logging
    set-up that is not ours (an embedding application's, uvicorn's `--log-config`)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            _add_once(target, RedactSecretsFilter)
            _add_once(target, ExplainedErrorFilter)


def _add_once(target: logging.Filterer, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in target.filters):
        target.addFilter(kind())


def configure_logging(level: str, fmt: str = "text") -> None:
    """Apply `logging_config` in this process. Under `uvicorn ...:app`, uvicorn has set up its loggers
    already: its `--no-access-log` (an access logger without handlers that does not propagate) is kept, and
    a `--log-config` that gives the root logger handlers of its own is kept whole (only the key filters join)."""
    if any(not isinstance(h.formatter, TextFormatter | JsonFormatter) for h in logging.getLogger().handlers):
        install_redaction()
        return
    access = logging.getLogger("uvicorn.access")
    access_off = "uvicorn.access" in logging.Logger.manager.loggerDict and not access.handlers \
        and not access.propagate
    logging.config.dictConfig(logging_config(level, fmt, access_log=not access_off))
    install_redaction()


def _numeric(level: str) -> int:
    return logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO)
