"""What a user's credits look like now: plain values, so the texts that word them need
not import the service that computes them (no import cycle through bot.chat.texts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.credits.models import Model
from bot.domain import UserRef


@dataclass(frozen=True)
class CreditStatus:
    user: UserRef
    balance: int
    cost_per_image: int
    images_left: int
    next_allowance_at: datetime | None
    allowance: int
    active_jobs: int
    # Every model with its cost when there is a choice (bot.credits.models); empty otherwise.
    models: tuple[Model, ...] = ()


@dataclass(frozen=True)
class BudgetStatus:
    """The operator's shared budget now (``credits.budget``, 0: none), for admins: what
    everyone spent in its period and since midnight UTC."""

    budget: int
    period: str
    spent_in_period: int
    spent_today: int
