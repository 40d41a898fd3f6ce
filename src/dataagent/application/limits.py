"""Per-key limits (PROTOCOL.md, Rate limits): new questions in a window (DATAAGENT_RATE_LIMIT) and answers running
at once (DATAAGENT_MAX_RUNS_PER_KEY), both counted per `who`, shared by every process when the broker is shared.

A question counts when it is asked (also one that is then queued or refused as run_in_progress: it was asked);
a run slot is held while an answer runs, from its start (a queued question's run takes one when it starts) until
its end, and refreshed with the run's lease, so the slot of a run whose process died lapses with its lease.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from dataagent.domain.errors import DataAgentError, RateLimitedError

log = logging.getLogger("dataagent.limits")

RUN_RETRY_S = 1  # a run slot frees when one of the key's answers ends: the hint a refused caller gets


def who_of(principal: str, end_user: str | None = None) -> str:
    """The one key every limit counts by: the principal, or the principal's end user when a request names one (a
    client's string of any length or content: hashed, so the key stays short and unambiguous)."""
    if end_user is None:
        return principal
    return f"{principal}/u_{hashlib.sha256(end_user.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class Quota:
    """Where `who` stands against one limit after asking: admitted or not, the limit, what is left of it, and in
    how many seconds one more is free."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float


class QuestionRate(Protocol):
    async def hit(self, who: str) -> Quota:
        """Count one new question of `who` in the current window, unless the window is full (then not counted)."""
        ...


class RunSlots(Protocol):
    async def acquire(self, who: str, run_id: str) -> Quota:
        """Hold a slot of `who` for the run, unless `who` holds them all (the same run again: already held)."""
        ...

    async def available(self, who: str) -> Quota:
        """Whether `who` has a slot free now, taking none."""
        ...

    async def release(self, who: str, run_id: str) -> None:
        """Free the run's slot (no-op if it holds none)."""
        ...

    async def refresh(self, held: Mapping[str, str]) -> None:
        """Keep the slots of these runs of this process (run_id -> who) from lapsing."""
        ...


def refusal(kind: str, quota: Quota) -> RateLimitedError:
    reset = max(1, math.ceil(quota.reset_s))
    what = "new questions" if kind == "questions" else "answers running at once"
    return RateLimitedError(
        f"This key may have {quota.limit} {what}; try again in {reset} s",
        details={"kind": kind, "limit": quota.limit, "remaining": quota.remaining, "reset": reset,
                 "retry_after": reset},
    )


class Limits:
    """The limits of every key; None for a limit that is not set (unlimited)."""

    def __init__(self, rate: QuestionRate | None = None, slots: RunSlots | None = None) -> None:
        self._rate = rate
        self._slots = slots

    async def admit_question(self, who: str, new_session: bool = False) -> None:
        """Count a new question; RateLimitedError past the key's rate. A question that opens a new session runs at
        once (nothing to queue behind): refused first if the key has no run slot free, so that it leaves no empty
        session (the slot is taken when the run starts)."""
        if new_session and self._slots is not None:
            quota = await self._slots.available(who)
            if not quota.allowed:
                raise refusal("runs", quota)
        if self._rate is not None:
            quota = await self._rate.hit(who)
            if not quota.allowed:
                raise refusal("questions", quota)

    async def take_slot(self, who: str | None, run_id: str) -> None:
        """Hold a run slot for the run; RateLimitedError if the key's answers already run at its limit."""
        if self._slots is not None and who is not None:
            quota = await self._slots.acquire(who, run_id)
            if not quota.allowed:
                raise refusal("runs", quota)

    async def free_slot(self, who: str | None, run_id: str) -> None:
        """Free the run's slot; never raises (a slot that could not be freed lapses with the run's lease)."""
        if self._slots is None or who is None:
            return
        try:
            await self._slots.release(who, run_id)
        except Exception as exc:  # noqa: BLE001 - the run ends all the same
            log.warning("run %s: could not free its run slot; it lapses with its lease", run_id,
                        exc_info=not isinstance(exc, DataAgentError))

    async def keep_slots(self, held: Mapping[str, str]) -> None:
        """Refresh the slots of this process's runs (run_id -> who), with their leases."""
        if self._slots is not None and held:
            await self._slots.refresh(held)
