"""What a cancel came to: plain values, so the texts that word them need not import the
job store that decides them (bot.jobs.cancellation)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.domain import Job


class Outcome(StrEnum):
    CANCELED = "canceled"  # was queued: removed and refunded now
    ASKED = "asked"  # at the provider: asked to stop, refunded when it has
    ALREADY_ASKED = "already_asked"
    CANNOT = "cannot"  # the provider has no cancel: the job goes on
    FINISHED = "finished"  # too late: it has finished (or is being delivered)
    NONE = "none"  # nothing unfinished to cancel
    NOT_YOURS = "not_yours"


@dataclass(frozen=True)
class CancelAnswer:
    outcome: Outcome
    job: Job | None = None
    balance: int | None = None
