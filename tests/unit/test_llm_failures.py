"""Which LLM failures are retried, after how long, and what a user is told (never the key)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from dataagent.adapters.agents.llm.failures import failure_message, is_transient, redact, retry_delay

REQUEST = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def status_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=REQUEST)
    return openai.APIStatusError(f"status {status}", response=response, body=None)


@pytest.mark.parametrize(("exc", "transient"), [
    (openai.APIConnectionError(request=REQUEST), True),
    (openai.APITimeoutError(request=REQUEST), True),
    (status_error(408), True), (status_error(429), True), (status_error(500), True), (status_error(503), True),
    (status_error(400), False), (status_error(401), False), (status_error(404), False),
    (openai.APIError("stream error", REQUEST, body=None), False),
    (ValueError("malformed"), False),
])
def test_only_connection_errors_timeouts_429_and_5xx_are_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_the_retry_delay_follows_the_server_then_backs_off_exponentially() -> None:
    assert retry_delay(status_error(429, {"retry-after-ms": "250"}), 0, 1.0) == 0.25
    assert retry_delay(status_error(429, {"retry-after": "2"}), 0, 1.0) == 2.0
    assert retry_delay(status_error(429, {"retry-after": "3600"}), 0, 1.0) == 30.0
    assert retry_delay(status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), 0, 1.0) <= 1.25
    delays = [retry_delay(status_error(500), attempt, 0.1) for attempt in range(4)]
    assert all(0.075 * 2**n <= d <= 0.125 * 2**n for n, d in enumerate(delays))


def test_messages_name_the_endpoint_and_the_setting_to_check() -> None:
    where = "http://127.0.0.1:9/v1"
    assert failure_message(status_error(401), where, 60, "m") == (
        "The LLM at http://127.0.0.1:9/v1 rejected the API key (HTTP 401); check DATAAGENT_LLM_API_KEY")
    assert "check DATAAGENT_LLM_MODEL" in failure_message(status_error(404), where, 60, "gpt-x")
    assert failure_message(openai.APITimeoutError(request=REQUEST), where, 7.5, "m") == (
        "The LLM at http://127.0.0.1:9/v1 did not answer within 7.5 s")
    assert failure_message(KeyError("x"), where, 60, "m") == "The LLM call failed (KeyError)"


def test_redaction_removes_the_key_and_anything_shaped_like_one() -> None:
    text = "key my-secret-value, sk-proj-abcdef123456 and Authorization: Bearer tok_abcdef123"
    cleaned = redact(text, "my-secret-value")
    assert "my-secret-value" not in cleaned and "sk-proj" not in cleaned and "tok_abcdef" not in cleaned
    assert redact("nothing secret here", None) == "nothing secret here"
