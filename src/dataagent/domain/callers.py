"""Who a request acts for: a principal (an API key's name), and the end user it names, if any (PROTOCOL.md, Auth)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dataagent.domain.errors import InvalidInputError

END_USER_PATTERN = re.compile(r"[A-Za-z0-9._@:+-]{1,128}")  # use fullmatch: `$` would accept a final newline
END_USER_RULE = "1..128 characters of [A-Za-z0-9._@:+-]"


def validate_end_user(end_user: object) -> str:
    """An end user id (X-User-ID, `user_id`): 1..128 characters of [A-Za-z0-9._@:+-]; InvalidInputError else."""
    if not isinstance(end_user, str) or not END_USER_PATTERN.fullmatch(end_user):
        shown = end_user[:80].encode("ascii", "backslashreplace").decode() if isinstance(end_user, str) else None
        raise InvalidInputError(f"user_id must be {END_USER_RULE}", details={"user_id": shown})
    return end_user


@dataclass(frozen=True, slots=True)
class Caller:
    """A principal, acting for one of its end users (`end_user`) or for itself (None: the key itself)."""

    principal: str
    end_user: str | None = None

    @classmethod
    def of(cls, who: Caller | str) -> Caller:
        """A Caller as it is, or a bare principal's name as the key itself."""
        return who if isinstance(who, Caller) else cls(who)

    @property
    def subject(self) -> str:
        """Whom a data policy entry and the idempotency keys belong to: `principal`, or `principal:end_user` (a
        configured principal's name never holds a colon, so the two never meet)."""
        return self.principal if self.end_user is None else f"{self.principal}:{self.end_user}"


Who = Caller | str  # what the use cases take: a Caller, or a principal's name (the key itself, no end user)
