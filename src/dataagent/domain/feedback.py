"""Feedback on answers, and verified queries: questions whose SQL an admin vouches for (docs/VERIFIED.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from dataagent.domain.errors import InvalidInputError
from dataagent.domain.inputs import valid_text

MAX_COMMENT_CHARS = 2000
MAX_QUESTION_CHARS = 4000
MAX_SQL_CHARS = 20000


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Feedback:
    """One principal's rating of one assistant message; given again, it replaces the earlier one."""

    session_id: str
    message_id: str
    principal: str
    rating: Rating
    comment: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class VerifiedQuery:
    """A question and the SQL that answers it, shown to the model as an example for similar questions."""

    query_id: str
    question: str
    sql: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    source_message_id: str | None = None  # the answer it was promoted from, if any


def bounded_text(value: str, what: str, max_chars: int, *, required: bool = True) -> str:
    """`value` made valid text (lone surrogates become U+FFFD), stripped; InvalidInputError if too long or empty."""
    text = valid_text(value).strip()
    if len(text) > max_chars:
        raise InvalidInputError(f"{what} is longer than {max_chars} characters")
    if required and not text:
        raise InvalidInputError(f"{what} is empty")
    return text
