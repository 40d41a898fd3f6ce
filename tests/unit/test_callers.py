"""Whose a session is for a caller (application/watch.py ownership_of), and what an end user id may be."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dataagent.application.watch import Ownership, ownership_of
from dataagent.domain.callers import Caller, validate_end_user
from dataagent.domain.errors import InvalidInputError
from dataagent.domain.models import Session

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def session(principal: str, end_user: str | None) -> Session:
    return Session("s", principal, "t", NOW, NOW, end_user=end_user)


@pytest.mark.parametrize(("owner", "caller", "expected"), [
    (("backend", "u1"), Caller("backend", "u1"), Ownership.OWNED),
    (("backend", "u1"), Caller("backend", "u2"), Ownership.FOREIGN),
    (("backend", "u1"), Caller("backend"), Ownership.VISIBLE),
    (("backend", "u1"), Caller("frontend", "u1"), Ownership.FOREIGN),
    (("backend", None), Caller("backend"), Ownership.OWNED),
    (("backend", None), Caller("backend", "u1"), Ownership.FOREIGN),
    (("backend", None), "backend", Ownership.OWNED),
    (("backend", "u1"), "backend", Ownership.VISIBLE),
])
def test_a_session_is_owned_by_its_principal_and_end_user_alone(
    owner: tuple[str, str | None], caller: Caller | str, expected: Ownership,
) -> None:
    assert ownership_of(session(*owner), caller) is expected
    assert ownership_of(None, caller) is Ownership.UNUSED


def test_the_key_reads_but_does_not_own_its_end_users_sessions() -> None:
    assert Ownership.VISIBLE.readable and Ownership.OWNED.readable
    assert not Ownership.FOREIGN.readable and not Ownership.UNUSED.readable


@pytest.mark.parametrize("bad", ["", " ", "x" * 129, "\ud800", "a\u00e9", "a b", "a/b", "a\n", None, 7])
def test_an_end_user_id_is_1_to_128_characters_of_a_conservative_charset(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        validate_end_user(bad)


def test_a_subject_names_the_end_user_after_its_principal() -> None:
    assert validate_end_user("a.B_9@x:y+z-" + "q" * 116) == "a.B_9@x:y+z-" + "q" * 116
    assert (Caller("backend").subject, Caller("backend", "u1").subject) == ("backend", "backend:u1")
