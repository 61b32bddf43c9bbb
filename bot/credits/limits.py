"""The operator's limits: one schema that names each limit once, with its bounds.

A limit is a field of ``Limits``. Its name is the config key (in the section its spec
names), the column of the ``policies`` table that holds an admin's run-time change (on
the ``global`` row), the keyword of ``KontextService.admin_set_limits`` and, through its
spec, the option of ``kontext-bot policy limits``. Its default and bounds are the config's
(``config_field``), and a change at run time is checked against the same bounds
(``validate_changes``), so the two cannot drift apart. What is in force is the config's
limits with the stored non-None values over them (``Limits.merged``).

Adding a limit: a field here, its key in its config section (``config_field``), an
Alembic migration adding the ``policies`` column, and the docs (configuration.md,
quotas.md). The CLI, the service, the stored row and the merge follow from the schema.

The config imports this module for its fields' bounds, so it imports no config: the
config's limits are read out of ``Settings`` where the core is wired
(``bot.app.limits_from_settings``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

from pydantic import Field as ConfigField

from bot.credits.periods import PERIODS, Period
from bot.errors import UserInputError
from bot.i18n import N_, _, number

NEGATIVE = N_("Limits cannot be negative (0 means no limit).")


@dataclass(frozen=True)
class LimitSpec:
    """What the schema knows of one limit besides its name and default."""

    section: str  # the config section holding its key: ``credits`` or ``jobs``
    flag: str  # its option of ``kontext-bot policy limits``
    help: str
    minimum: float | None = 0  # for numbers; with ``maximum``, the range an admin may set
    maximum: float | None = None
    # What an admin is told for a value outside the range (marked N_, translated where
    # it is said; it may name {minimum} and {maximum}).
    out_of_range: str = NEGATIVE
    choices: tuple[str, ...] = ()  # for words: the values allowed


def _spec(section: str, flag: str, help: str, **bounds: Any) -> dict[str, LimitSpec]:
    """A limit field's metadata: its ``LimitSpec``."""
    return {"limit": LimitSpec(section, flag, help, **bounds)}


PER_USER_CONCURRENT_MAX = 100  # the most jobs of one user that may run at once


@dataclass(frozen=True)
class Limits:
    """The limits in force for everyone (and, with a scope's allowance, for one user).

    0 means "no limit" for the cap, the budget and the cooldown; the per-user
    concurrency has no "none" (0 would hold every job in the queue forever).
    """

    allowance: int = field(
        default=1200, metadata=_spec("credits", "--allowance", "credits per period per user")
    )
    period: Period = field(
        default="daily",
        metadata=_spec("credits", "--period", "how often the allowance comes", choices=PERIODS),
    )
    # How far a balance may grow by allowances (admin grants may exceed it).
    max_balance: int = field(
        default=0, metadata=_spec("credits", "--max-balance", "cap on what allowances add up to")
    )
    # The credits all users together may spend per period.
    budget: int = field(
        default=0, metadata=_spec("credits", "--budget", "credits everyone may spend per period")
    )
    # The pause between one user's requests.
    cooldown_seconds: float = field(
        default=0.0, metadata=_spec("credits", "--cooldown", "seconds between a user's requests")
    )
    # One user's jobs running at once; the queue keeps the rest.
    per_user_concurrent: int = field(
        default=2,
        metadata=_spec(
            "jobs",
            "--concurrent",
            "one user's jobs running at once",
            minimum=1,
            maximum=PER_USER_CONCURRENT_MAX,
            out_of_range=N_("Jobs per user at once must be between {minimum} and {maximum}."),
        ),
    )

    def merged(self, changes: Mapping[str, Any]) -> Limits:
        """These limits with the non-None values of ``changes`` (by limit name) over them."""
        return replace(self, **{name: v for name, v in changes.items() if v is not None})


def spec(limit: Field[Any]) -> LimitSpec:
    found: LimitSpec = limit.metadata["limit"]
    return found


LIMITS: dict[str, Field[Any]] = {f.name: f for f in fields(Limits)}


def config_field(name: str) -> Any:
    """The pydantic field of a limit's config key: the schema's default and bounds."""
    limit = LIMITS[name]
    bounds = spec(limit)
    if bounds.choices:  # the config's type (a Literal) holds the choices
        return ConfigField(limit.default)
    return ConfigField(limit.default, ge=bounds.minimum, le=bounds.maximum)


def add_options(parser: argparse.ArgumentParser) -> None:
    """One option per limit, as its spec names it (``kontext-bot policy limits``); its
    value lands under the limit's name, None when not given."""
    for name, limit in LIMITS.items():
        bounds = spec(limit)
        if bounds.choices:
            parser.add_argument(bounds.flag, dest=name, choices=bounds.choices, help=bounds.help)
        else:
            kind: type[Any] = type(limit.default)
            parser.add_argument(bounds.flag, dest=name, type=kind, help=bounds.help)


def validate_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes an admin asked for (None: unchanged), checked against the schema.

    Raises ``UserInputError`` saying what is wrong; nothing is half-applied because the
    caller stores only what this returns.
    """
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if value is None:
            continue
        limit = LIMITS.get(name)
        if limit is None:
            raise UserInputError(
                _("'{name}' is not a limit: use {limits}.").format(
                    name=name, limits=", ".join(LIMITS)
                )
            )
        checked[name] = _checked(name, limit, value)
    return checked


def _checked(name: str, limit: Field[Any], value: Any) -> Any:
    bounds = spec(limit)
    if bounds.choices:
        if value not in bounds.choices:
            raise UserInputError(
                _("'{value}' is not a {name}: use {choices}.").format(
                    value=value, name=name, choices=", ".join(bounds.choices)
                )
            )
        return value
    default: Any = limit.default
    kind: type[Any] = type(default)  # int or float (which takes an int too)
    if isinstance(value, bool) or not isinstance(value, int | kind):
        if kind is int:
            raise UserInputError(_("{name} must be a whole number.").format(name=name))
        raise UserInputError(_("{name} must be a number.").format(name=name))
    if value < 0:
        raise UserInputError(_(NEGATIVE))
    if (bounds.minimum is not None and value < bounds.minimum) or (
        bounds.maximum is not None and value > bounds.maximum
    ):
        raise UserInputError(
            _(bounds.out_of_range).format(
                minimum=number(bounds.minimum or 0), maximum=number(bounds.maximum or 0)
            )
        )
    return value
