"""Logging set-up, and the filter that keeps API keys in WebSocket query strings out of every log line."""

from __future__ import annotations

import logging
import re

# `api_key=`, also with its underscore percent-encoded (`api%5Fkey=`), as Starlette decodes both
_SECRET_QUERY = re.compile(r"((?:api(?:_|%5f)key|apikey|token)=)[^&\s\"'\\]+", re.IGNORECASE)
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "dataagent")


def redact(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1***", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites `api_key=...` in a record's message and arguments to `api_key=***`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()  # arguments of any type (bytes in an ASGI scope at trace level)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ExplainedErrorFilter(logging.Filter):
    """uvicorn logs a failed start-up as a whole traceback; when it ends in one of our own errors
    (e.g. `StoreUnavailableError: cannot use MySQL at db:3306/dataagent: ...`), that line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback (most recent call last)"):
            last = message.rstrip().rsplit("\n", 1)[-1]
            if last.startswith("dataagent.") and "Error: " in last:
                record.msg, record.args, record.exc_info, record.exc_text = last, None, None, None
        return True


def install_redaction() -> None:
    """Attach the filters to uvicorn's and our loggers and to their handlers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for target in (logger, *logger.handlers):
            _add_once(target, RedactSecretsFilter)
            _add_once(target, ExplainedErrorFilter)


def _add_once(target: logging.Filterer, kind: type[logging.Filter]) -> None:
    if not any(isinstance(f, kind) for f in target.filters):
        target.addFilter(kind())


def configure_logging(level: str) -> None:
    numeric = logging.DEBUG if level == "trace" else getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("dataagent").setLevel(numeric)
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # it warns on every non-SQL command it falls back on
    install_redaction()
