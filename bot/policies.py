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

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.domain import RequestContext, UserRef
from bot.errors import UserInputError
from bot.ledger import AllowancePolicy
from bot.periods import Period
from bot.storage.dialect import one_of, upsert
from bot.storage.schema import policies

SCOPE_KINDS = ("workspace", "channel", "role", "user")
_PART = r"[A-Za-z0-9_.@-]{1,64}"
_SCOPE = re.compile(
    rf"^(?:workspace:{_PART}:{_PART}|(?:channel|role|user):{_PART}:{_PART}:{_PART})$"
)
_PERIODS: tuple[Period, ...] = ("daily", "weekly", "monthly", "never")
_DAYS = {"daily": 1.0, "weekly": 7.0, "monthly": 30.0}


GLOBAL = "global"


def parse_scope(text: str) -> str:
    scope = text.strip()
    if scope != GLOBAL and not _SCOPE.match(scope):
        raise UserInputError(
            f"'{text}' is not a scope: write global, workspace:PLATFORM:WORKSPACE, "
            "channel:PLATFORM:WORKSPACE:CHANNEL, role:PLATFORM:WORKSPACE:ROLE or "
            "user:PLATFORM:WORKSPACE:USER"
        )
    return scope


def scope_workspace(scope: str) -> tuple[str, str] | None:
    """The (platform, workspace) a scope belongs to: whose admins may change it (None for
    ``global``, which only the bot's own admins may)."""
    parts = scope.split(":")
    return (parts[1], parts[2]) if len(parts) >= 3 else None


def parse_period(text: str) -> Period:
    for period in _PERIODS:
        if text.strip().lower() == period:
            return period
    raise UserInputError(f"'{text}' is not a period: use {', '.join(_PERIODS)}.")


@dataclass(frozen=True)
class Override:
    scope: str
    allowance: int | None = None
    period: Period | None = None
    paused: bool = False
    # The operator's limits; only the ``global`` scope carries them.
    max_balance: int | None = None
    budget: int | None = None
    cooldown_seconds: float | None = None
    per_user_concurrent: int | None = None


def with_global(base: AllowancePolicy, stored: Override | None) -> AllowancePolicy:
    """The config's policy with what admins changed for everyone at run time."""
    if stored is None:
        return base
    return AllowancePolicy(
        amount=base.amount if stored.allowance is None else stored.allowance,
        period=stored.period or base.period,
        max_balance=base.max_balance if stored.max_balance is None else stored.max_balance,
        budget=base.budget if stored.budget is None else stored.budget,
        cooldown_seconds=(
            base.cooldown_seconds if stored.cooldown_seconds is None else stored.cooldown_seconds
        ),
        per_user_concurrent=(
            base.per_user_concurrent
            if stored.per_user_concurrent is None
            else stored.per_user_concurrent
        ),
    )


def scopes_for(user: UserRef, context: RequestContext) -> list[str]:
    space = f"{user.platform}:{user.workspace}"
    scopes = [f"user:{user}", f"workspace:{space}"]
    if context.channel:
        scopes.append(f"channel:{space}:{context.channel}")
    scopes.extend(f"role:{space}:{role}" for role in context.roles)
    return scopes


def _per_30_days(amount: int, period: Period) -> float:
    """What an allowance is worth over a month, to compare allowances of different
    periods; a one-time allowance counts once."""
    return amount * 30.0 / _DAYS[period] if period in _DAYS else float(amount)


def effective_policy(
    base: AllowancePolicy, user: UserRef, overrides: Mapping[str, Override]
) -> AllowancePolicy:
    own = overrides.get(f"user:{user}")
    if own is not None and own.allowance is not None:
        return replace(base, amount=own.allowance, period=own.period or base.period)
    best = base
    for scope, override in overrides.items():
        if scope.startswith("user:") or override.allowance is None:
            continue
        candidate = replace(base, amount=override.allowance, period=override.period or base.period)
        if _per_30_days(candidate.amount, candidate.period) > _per_30_days(
            best.amount, best.period
        ):
            best = candidate
    return best


class PolicyBook:
    """The overrides from config plus what admins stored; read inside the caller's
    transaction so a reservation sees one consistent state."""

    def __init__(self, base: AllowancePolicy, configured: Iterable[Override] = ()) -> None:
        self.base = base
        self.configured = {o.scope: o for o in configured}

    async def overrides(self, conn: AsyncConnection, scopes: list[str]) -> dict[str, Override]:
        found = {s: self.configured[s] for s in scopes if s in self.configured}
        rows = await conn.execute(select(policies).where(one_of(conn, policies.c.scope, scopes)))
        for row in rows:
            found[row.scope] = Override(
                scope=row.scope,
                allowance=row.allowance,
                period=parse_period(row.period) if row.period else None,
                paused=bool(row.paused),
                max_balance=row.max_balance,
                budget=row.budget,
                cooldown_seconds=row.cooldown_seconds,
                per_user_concurrent=row.per_user_concurrent,
            )
        return found

    async def for_everyone(self, conn: AsyncConnection) -> AllowancePolicy:
        """The operator's limits in force: the config with what admins stored on the
        ``global`` scope."""
        return with_global(self.base, (await self.overrides(conn, [GLOBAL])).get(GLOBAL))

    async def resolve(
        self, conn: AsyncConnection, user: UserRef, context: RequestContext
    ) -> tuple[AllowancePolicy, str | None]:
        """The user's allowance policy here, and the scope that pauses the bot (if any).
        One query: the scopes that apply and the ``global`` row together."""
        found = await self.overrides(conn, [GLOBAL, *scopes_for(user, context)])
        return self.decide(found, user, context)

    def decide(
        self, found: Mapping[str, Override], user: UserRef, context: RequestContext
    ) -> tuple[AllowancePolicy, str | None]:
        """``resolve`` over overrides already read (a batch reads all of its users' at
        once); ``found`` may hold other users' scopes too."""
        mine = {s: found[s] for s in [GLOBAL, *scopes_for(user, context)] if s in found}
        paused = next((scope for scope, o in mine.items() if o.paused), None)
        base = with_global(self.base, mine.pop(GLOBAL, None))
        return effective_policy(base, user, mine), paused

    async def store(
        self,
        conn: AsyncConnection,
        scope: str,
        *,
        actor: str,
        now: float,
        allowance: int | None = None,
        period: Period | None = None,
        paused: bool | None = None,
        clear_allowance: bool = False,
        max_balance: int | None = None,
        budget: int | None = None,
        cooldown_seconds: float | None = None,
        per_user_concurrent: int | None = None,
    ) -> Override:
        """Change a scope's stored policy; unnamed fields keep their value (from the
        stored row, else the config)."""
        current = (await self.overrides(conn, [scope])).get(scope, Override(scope))

        def keep(new_value: Any, old_value: Any) -> Any:
            return old_value if new_value is None else new_value

        new = Override(
            scope=scope,
            allowance=None if clear_allowance else keep(allowance, current.allowance),
            period=None if clear_allowance else keep(period, current.period),
            paused=keep(paused, current.paused),
            max_balance=keep(max_balance, current.max_balance),
            budget=keep(budget, current.budget),
            cooldown_seconds=keep(cooldown_seconds, current.cooldown_seconds),
            per_user_concurrent=keep(per_user_concurrent, current.per_user_concurrent),
        )
        values = {
            "allowance": new.allowance,
            "period": new.period,
            "paused": int(new.paused),
            "max_balance": new.max_balance,
            "budget": new.budget,
            "cooldown_seconds": new.cooldown_seconds,
            "per_user_concurrent": new.per_user_concurrent,
            "updated_by": actor,
            "updated_at": now,
        }
        await upsert(conn, policies, {"scope": scope, **values}, ["scope"], values)
        return new
