"""What a client is configured with; the API key kept out of every repr and log line."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any


class Secret:
    """A string that never shows in a repr, str or log line."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class ClientConfig:
    """`timeout`: seconds for a connection and each REST call that does not wait for a run; `run_timeout`:
    for the calls that do (`ask`, a decision after `ask`; None: no bound); `retries`: reconnections a stream
    tries in a row before `ConnectionLost`, waiting `backoff` seconds, doubled each time up to `max_backoff`;
    `user_id`: the end user every request acts for (X-User-ID; the key needs the `end_users` scope)."""

    base_url: str
    api_key: Secret | None = field(default=None, repr=False)
    timeout: float = 30.0
    run_timeout: float | None = 600.0
    retries: int = 6
    backoff: float = 0.1
    max_backoff: float = 3.0
    user_id: str | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")

    def headers(self) -> dict[str, str]:
        """The key as a bearer token (httpx masks `Authorization` in its reprs), and the end user if named."""
        headers = {"Authorization": f"Bearer {self.api_key.reveal()}"} if self.api_key else {}
        if self.user_id is not None:
            headers["X-User-ID"] = self.user_id
        return headers

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * 2 ** max(0, attempt - 1)))


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """The websockets library logs handshake headers at debug level: the key becomes `***` there."""

    def __init__(self, logger: logging.Logger, secret: Secret | None) -> None:
        super().__init__(logger, {})
        self._secret = secret

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            key = self._secret.reveal() if self._secret else None
            if key:
                msg = str(msg).replace(key, "***")
                args = tuple(str(a).replace(key, "***") if key in str(a) else a for a in args)
            super().log(level, msg, *args, **kwargs)
