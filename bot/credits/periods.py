"""Allowance periods in UTC: the key of the current period and when the next begins.

Pure (no config, no storage): the config, the limits, the policies and the ledger all
name periods, so this module imports nothing of theirs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from bot.errors import UserInputError
from bot.i18n import _

Period = Literal["daily", "weekly", "monthly", "never"]
PERIODS: tuple[Period, ...] = get_args(Period)


def parse_period(text: str) -> Period:
    """A period as an admin typed it (any case, spaces around)."""
    for period in PERIODS:
        if text.strip().lower() == period:
            return period
    raise UserInputError(
        _("'{text}' is not a period: use {periods}.").format(text=text, periods=", ".join(PERIODS))
    )


def period_key(period: Period, now: float) -> str:
    """A stable name for the period containing ``now``; one allowance grant per key."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "daily":
        return moment.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _weekday = moment.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "monthly":
        return moment.strftime("%Y-%m")
    return "once"


def next_period_start(period: Period, now: float) -> datetime | None:
    """When the next allowance becomes available; None for a one-time allowance."""
    moment = datetime.fromtimestamp(now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight + timedelta(days=1)
    if period == "weekly":
        return midnight + timedelta(days=7 - moment.weekday())
    if period == "monthly":
        if moment.month == 12:
            return midnight.replace(year=moment.year + 1, month=1, day=1)
        return midnight.replace(month=moment.month + 1, day=1)
    return None


def period_start(period: Period, now: float) -> float:
    """Epoch seconds at which the period containing ``now`` began (0 for ``never``)."""
    moment = datetime.fromtimestamp(now, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight.timestamp()
    if period == "weekly":
        return (midnight - timedelta(days=moment.weekday())).timestamp()
    if period == "monthly":
        return midnight.replace(day=1).timestamp()
    return 0.0
