"""DATAAGENT_KEY_SCOPES: which principal holds which scope and the values refused (the 403 of a missing scope
is tested on the routes that need one)."""

from __future__ import annotations

import pytest

from dataagent.application.auth import ADMIN, END_USERS, ApiKeyAuthenticator
from dataagent.entrypoints.settings import Settings


def test_scopes_parse_into_a_map_per_principal() -> None:
    settings = Settings(key_scopes="ops:admin,backend:end_users,ops:end_users")  # type: ignore[arg-type]
    assert settings.scopes_by_principal == {"ops": {ADMIN, END_USERS}, "backend": {END_USERS}}


@pytest.mark.parametrize("value", ["ops:root", "admin", ":admin", "ops:"])
def test_an_unknown_scope_or_a_bare_entry_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="principal:scope"):
        Settings(key_scopes=value)  # type: ignore[arg-type]


def test_only_the_granted_principal_holds_a_scope_and_disabled_auth_grants_all() -> None:
    auth = ApiKeyAuthenticator(["ops:k1", "app:k2"], scopes={"ops": {ADMIN}})
    assert auth.has_scope("ops", ADMIN)
    assert not auth.has_scope("ops", END_USERS)
    assert not auth.has_scope("app", ADMIN)
    assert ApiKeyAuthenticator([], disabled=True).has_scope("anonymous", ADMIN)
