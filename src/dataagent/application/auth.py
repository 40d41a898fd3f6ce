"""API keys and the principals they name (PROTOCOL.md, Auth)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

ANONYMOUS = "anonymous"


def principal_for(key: str) -> str:
    """The principal of an unnamed key: `key_` + the first 16 hex digits of its SHA-256."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ApiKey:
    principal: str
    key: bytes


class ApiKeyAuthenticator:
    """Checks a presented key against every configured key in constant time."""

    def __init__(self, entries: Iterable[str], disabled: bool = False) -> None:
        self.disabled = disabled
        self._keys = tuple(self._parse(e) for e in entries if e)

    @staticmethod
    def _parse(entry: str) -> ApiKey:
        name, sep, key = entry.partition(":")
        if sep and name and key:
            return ApiKey(name, key.encode())
        return ApiKey(principal_for(entry), entry.encode())

    @property
    def principals(self) -> list[str]:
        return [k.principal for k in self._keys]

    def authenticate(self, presented: str | None) -> str | None:
        """The principal of the presented key, or None; `anonymous` when auth is disabled."""
        if self.disabled:
            return ANONYMOUS
        if not presented:
            return None
        candidate = presented.encode()
        found: str | None = None
        for api_key in self._keys:  # compare with every key, so timing does not tell which matched
            if hmac.compare_digest(candidate, api_key.key):
                found = api_key.principal
        return found
