"""Who gets which allowance, and where the bot is paused.

A request comes from a user in a workspace, maybe in a channel, maybe holding roles
(Discord). Each of those is a *scope* that can carry an allowance override or a pause:

    workspace:<platform>:<workspace>            workspace:discord:9876
    channel:<platform>:<workspace>:<channel>    channel:slack:T0123:C0456
    role:<platform>:<workspace>:<role>          role:discord:9876:777
    user:<platform>:<workspace>:<user>          user:discord:9876:1234

Overrides come from ``credits.overrides`` in the config and from admins at run time
(stored in the ``policies`` table; a stored row wins over the config for its scope).
Among the workspace, channel and role overrides that apply, the most generous wins,
compared as credits per 30 days (1200 daily is 36,000; 6000 weekly is 25,714; 50,000
monthly beats both); an override on the user themself is an admin's explicit choice
and wins outright, more or less generous. A pause on any scope that applies refuses
new requests there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits.limits import LIMITS, Limits
from bot.credits.periods import Period
from bot.credits.scopes import GLOBAL, scopes_for
from bot.domain import RequestContext, UserRef
from bot.storage.dialect import one_of, upsert
from bot.storage.schema import policies

_DAYS = {"daily": 1.0, "weekly": 7.0, "monthly": 30.0}


@dataclass(frozen=True)
class Override:
    """What one scope changes: its allowance (and period) or a pause. The ``global``
    scope also carries the operator's other limits as admins changed them."""

    scope: str
    allowance: int | None = None
    period: Period | None = None
    paused: bool = False
    # The other limits changed at run time, by their ``Limits`` names (only the
    # ``global`` scope carries them); a limit not here keeps the config's value.
    limits: Mapping[str, Any] = field(default_factory=dict)
    # Restricted models (bot.credits.models) allowed in this scope; None: not set here (a
    # stored row without it keeps the config's list for the scope).
    models: tuple[str, ...] | None = None

    def changes(self) -> dict[str, Any]:
        """Every limit this scope sets, by its ``Limits`` name (None: not set)."""
        return {**self.limits, "allowance": self.allowance, "period": self.period}

    @classmethod
    def setting(
        cls,
        scope: str,
        changes: Mapping[str, Any],
        *,
        paused: bool = False,
        models: tuple[str, ...] | None = None,
    ) -> Override:
        """The override of ``scope`` that sets ``changes`` (limits by name; None: not set)."""
        rest = {
            name: value
            for name, value in changes.items()
            if value is not None and name not in ("allowance", "period")
        }
        return cls(scope, changes.get("allowance"), changes.get("period"), paused, rest, models)


def with_global(base: Limits, stored: Override | None) -> Limits:
    """The config's limits with what admins changed for everyone at run time."""
    return base if stored is None else base.merged(stored.changes())


def _stored_models(text: str | None) -> tuple[str, ...] | None:
    """The ``policies.models`` column: NULL is "not set", "" is "none"."""
    if text is None:
        return None
    return tuple(name for name in text.split(",") if name)


def _per_30_days(amount: int, period: Period) -> float:
    """What an allowance is worth over a month, to compare allowances of different
    periods; a one-time allowance counts once."""
    return amount * 30.0 / _DAYS[period] if period in _DAYS else float(amount)


def effective_policy(base: Limits, user: UserRef, overrides: Mapping[str, Override]) -> Limits:
    """The limits for one user: ``base`` with the allowance of the scopes that apply."""
    own = overrides.get(f"user:{user}")
    if own is not None and own.allowance is not None:
        return replace(base, allowance=own.allowance, period=own.period or base.period)
    best = base
    for scope, override in overrides.items():
        if scope.startswith("user:") or override.allowance is None:
            continue
        candidate = replace(
            base, allowance=override.allowance, period=override.period or base.period
        )
        if _per_30_days(candidate.allowance, candidate.period) > _per_30_days(
            best.allowance, best.period
        ):
            best = candidate
    return best


class PolicyBook:
    """The overrides from config plus what admins stored; read inside the caller's
    transaction so a reservation sees one consistent state."""

    def __init__(
        self,
        base_limits: Limits,
        configured: Iterable[Override] = (),
        budget_period: Period | None = None,
    ) -> None:
        self.base_limits = base_limits  # the config's; the ``global`` row's changes go over
        self.configured = {o.scope: o for o in configured}
        # ``credits.budget_period``; None: the budget counts over the allowance's period.
        self.budget_period = budget_period

    def budget_period_of(self, limits: Limits) -> Period:
        """The period the shared budget is counted over under ``limits``."""
        return self.budget_period or limits.period

    async def overrides(self, conn: AsyncConnection, scopes: list[str]) -> dict[str, Override]:
        found = {s: self.configured[s] for s in scopes if s in self.configured}
        rows = await conn.execute(select(policies).where(one_of(conn, policies.c.scope, scopes)))
        for row in rows:
            # Each limit's column is named as the limit (bot.credits.limits).
            stored = {name: row._mapping[name] for name in LIMITS}
            models = _stored_models(row.models)
            if models is None and row.scope in self.configured:
                models = self.configured[row.scope].models
            found[row.scope] = Override.setting(
                row.scope, stored, paused=bool(row.paused), models=models
            )
        return found

    async def for_everyone(self, conn: AsyncConnection) -> Limits:
        """The operator's limits in force: the config with what admins stored on the
        ``global`` scope."""
        return with_global(self.base_limits, (await self.overrides(conn, [GLOBAL])).get(GLOBAL))

    async def resolve(
        self, conn: AsyncConnection, user: UserRef, context: RequestContext
    ) -> tuple[Limits, str | None]:
        """The user's allowance policy here, and the scope that pauses the bot (if any).
        One query: the scopes that apply and the ``global`` row together."""
        found = await self.overrides(conn, [GLOBAL, *scopes_for(user, context)])
        return self.decide(found, user, context)

    def decide(
        self, found: Mapping[str, Override], user: UserRef, context: RequestContext
    ) -> tuple[Limits, str | None]:
        """``resolve`` over overrides already read (a batch reads all of its users' at
        once); ``found`` may hold other users' scopes too."""
        mine = {s: found[s] for s in [GLOBAL, *scopes_for(user, context)] if s in found}
        paused = next((scope for scope, o in mine.items() if o.paused), None)
        base = with_global(self.base_limits, mine.pop(GLOBAL, None))
        return effective_policy(base, user, mine), paused

    # -- restricted models (bot.credits.models; docs/credits.md) -------------------------------

    def allowed_models(
        self, found: Mapping[str, Override], user: UserRef, context: RequestContext
    ) -> frozenset[str]:
        """The restricted models allowed to this user here: every model named by an
        override of a scope that applies (``global`` included), in lower case."""
        names: set[str] = set()
        for scope in [GLOBAL, *scopes_for(user, context)]:
            override = found.get(scope)
            if override is not None and override.models:
                names.update(name.lower() for name in override.models)
        return frozenset(names)

    # -- end of restricted models -------------------------------------------------------

    async def reset(
        self, conn: AsyncConnection, scope: str, names: Iterable[str], *, actor: str, now: float
    ) -> None:
        """Drop stored limits of a scope (``kontext-bot policy limits --reset KEY``): the
        config's value is in force again. ``store`` cannot: a None there means
        "unchanged"."""
        columns = set(names)
        unknown = sorted(columns - set(LIMITS))
        if unknown:
            raise TypeError(f"not limits: {', '.join(unknown)}")
        values: dict[str, Any] = dict.fromkeys(columns)
        values.update(updated_by=actor, updated_at=now)
        await conn.execute(update(policies).where(policies.c.scope == scope).values(**values))

    async def store(
        self,
        conn: AsyncConnection,
        scope: str,
        *,
        actor: str,
        now: float,
        paused: bool | None = None,
        clear_allowance: bool = False,
        models: tuple[str, ...] | None = None,
        **changes: Any,
    ) -> Override:
        """Change a scope's stored policy: ``changes`` are limits by their ``Limits``
        names (the caller has validated them, ``bot.credits.limits.validate_changes``); unnamed
        or None ones keep their value (from the stored row, else the config). ``models``:
        the restricted models allowed there (empty: none; None: unchanged)."""
        unknown = sorted(set(changes) - set(LIMITS))
        if unknown:
            raise TypeError(f"not limits: {', '.join(unknown)}")
        current = (await self.overrides(conn, [scope])).get(scope, Override(scope))
        kept = {**current.changes(), **{n: v for n, v in changes.items() if v is not None}}
        if clear_allowance:
            kept.update(allowance=None, period=None)
        new = Override.setting(
            scope,
            kept,
            paused=current.paused if paused is None else paused,
            models=current.models if models is None else models,
        )
        sets = new.changes()
        values = {
            **{name: sets.get(name) for name in LIMITS},
            "paused": int(new.paused),
            "updated_by": actor,
            "updated_at": now,
        }
        if models is not None:
            values["models"] = ",".join(models)
        await upsert(conn, policies, {"scope": scope, **values}, ["scope"], values)
        return new
