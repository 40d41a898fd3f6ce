"""What went wrong with an LLM call, in words a user can act on, never with a secret in them."""

from __future__ import annotations

import random
import re

import openai

RETRY_AFTER_CAP_S = 30.0
_KEY_PATTERN = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}|\bBearer\s+\S{6,}", re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Worth another try: connection errors, timeouts, 408, 409, 429 and 5xx."""
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def retry_delay(exc: BaseException, attempt: int, base_s: float) -> float:
    """The server's retry-after (ms or s, capped), else exponential backoff with jitter."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            seconds = float(str(headers.get(name))) * scale
        except ValueError:
            continue
        return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)
    return base_s * (1 << attempt) * random.uniform(0.75, 1.25)


def failure_message(exc: BaseException, where: str, timeout_s: float, model: str, started: bool = False) -> str:
    """One sentence about the failure (`started`: after the first token); never the API key."""
    if isinstance(exc, openai.APITimeoutError):
        if started:
            return f"The LLM at {where} stopped answering for {timeout_s:g} s in the middle of its answer"
        return f"The LLM at {where} did not answer within {timeout_s:g} s"
    if isinstance(exc, openai.APIConnectionError):
        if started:
            return f"The connection to the LLM at {where} broke off in the middle of its answer"
        return f"Could not reach the LLM at {where}"
    if isinstance(exc, openai.APIStatusError):
        return _status_message(exc, where, model)
    if isinstance(exc, openai.APIError):
        return f"The LLM at {where} reported an error in its stream: {_clip(exc.message)}"
    if isinstance(exc, ValueError):  # json.JSONDecodeError is one
        return f"The LLM at {where} sent a malformed stream"
    return f"The LLM call failed ({type(exc).__name__})"


def _status_message(exc: openai.APIStatusError, where: str, model: str) -> str:
    status = exc.status_code
    if status == 401:
        return f"The LLM at {where} rejected the API key (HTTP 401); check DATAAGENT_LLM_API_KEY"
    if status == 403:
        return f"The LLM at {where} refused access (HTTP 403)"
    if status == 404:
        return (f"The LLM at {where} does not know the model {model!r} or the URL (HTTP 404); "
                "check DATAAGENT_LLM_MODEL and DATAAGENT_LLM_BASE_URL")
    if status == 429:
        return f"The LLM at {where} is rate-limiting requests (HTTP 429)"
    if status >= 500:
        return f"The LLM at {where} failed (HTTP {status})"
    return f"The LLM at {where} refused the request (HTTP {status}): {_clip(exc.message)}"


def redact(text: str, secret: str | None) -> str:
    """`text` without the secret, nor anything shaped like a key."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_PATTERN.sub("***", text)


def _clip(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
