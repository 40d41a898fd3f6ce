"""The LLM engine's settings, as plain values (the entrypoints fill them from DATAAGENT_LLM_*)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """How to reach the model and how much to send it.

    `timeout_s` bounds connecting and each wait for the next piece of a streamed answer; `max_steps` bounds
    the tool-call rounds of one answer; `retries` bounds the retries of a call that fails before its first
    token; history is cut to `history_messages` stored messages and about `history_chars` characters.
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    max_steps: int = 8
    retries: int = 2
    retry_base_s: float = 0.5
    history_messages: int = 40
    history_chars: int = 24_000

    @property
    def where(self) -> str:
        return endpoint(self.base_url or DEFAULT_BASE_URL)


def endpoint(url: str) -> str:
    """The URL as it may appear in messages and logs: scheme, host, port and path, no credentials or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path.rstrip('/')}"
