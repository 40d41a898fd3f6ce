"""API keys and the principals they name (PROTOCOL.md, Auth)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ANONYMOUS = "anonymous"

# What a key may do beyond its own sessions (DATAAGENT_KEY_SCOPES, e.g. `ops:admin,backend:end_users`):
ADMIN = "admin"  # read the audit trail, manage verified queries
END_USERS = "end_users"  # act for the end users its requests name (X-User-ID)
SCOPES = frozenset({ADMIN, END_USERS})


def principal_for(key: str) -> str:
    """The principal of an unnamed key: `key_` + the first 16 hex digits of its SHA-256."""
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ApiKey:
    principal: str
    key: bytes


class ApiKeyAuthenticator:
    """Checks a presented key against every configured key in constant time."""

    def __init__(
        self, entries: Iterable[str], disabled: bool = False, scopes: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.disabled = disabled
        self._keys = tuple(self._parse(e) for e in entries if e)
        self._scopes = {principal: frozenset(granted) for principal, granted in (scopes or {}).items()}

    @staticmethod
    def _parse(entry: str) -> ApiKey:
        name, sep, key = entry.partition(":")
        if sep and name and key:
            return ApiKey(name, key.encode())
        return ApiKey(principal_for(entry), entry.encode())

    @property
    def principals(self) -> list[str]:
        return [k.principal for k in self._keys]

    def has_scope(self, principal: str, scope: str) -> bool:
        """Whether `principal` holds `scope`. With auth disabled everybody does: nothing is a boundary then."""
        return self.disabled or scope in self._scopes.get(principal, ())

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
