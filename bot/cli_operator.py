"""The operator's commands of ``kontext-bot``: ``credits``, ``policy`` and ``provider``,
which read and change the same storage and provider accounts as the running bot
(DESIGN.md "CLI contract"); ``bot.cli`` parses the arguments and calls them.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from bot.chat import texts
from bot.config import Settings
from bot.credits.limits import LIMITS
from bot.domain import UserRef
from bot.errors import UserInputError


async def policy(settings: Settings, args: argparse.Namespace) -> int:
    """The operator's side of the admin API: acts as ``cli:local:<os user>``, recorded
    in the ledger like an admin on a platform."""
    from bot.app import build_core

    operator = UserRef.local("cli")
    core = await build_core(settings, with_runner=False)
    service = core.service
    service.admins = service.admins | {str(operator)}
    try:
        if args.policy_command == "limits":
            changes = {name: getattr(args, name) for name in LIMITS}
            reset = [n for names in (args.reset or []) for n in names.replace(",", " ").split()]
            if reset:
                names = list(LIMITS) if reset == ["all"] else reset
                now = await service.admin_reset_limits(operator, names)
            elif any(v is not None for v in changes.values()):
                now = await service.admin_set_limits(operator, **changes)
            else:
                now = await service.limits()
            print(texts.limits_text(now, settings.credits.budget_period or None))
            return 0
        if args.policy_command == "allowance":
            off = args.amount.lower() == "off"
            if not off and not args.amount.isdigit():
                raise UserInputError(f"'{args.amount}' is not a number of credits or 'off'")
            await service.admin_set_allowance(
                operator, args.scope, None if off else int(args.amount), args.period
            )
        elif args.policy_command == "models":
            names = [] if [n.lower() for n in args.names] == ["off"] else args.names
            await service.admin_set_models(operator, args.scope, names)
        elif args.policy_command in ("pause", "resume"):
            await service.admin_pause(operator, args.scope, args.policy_command == "pause")
        override = await service.admin_policy(args.scope)
        print(texts.policy_text(args.scope, override, await service.limits()))
        return 0
    finally:
        await core.close()


async def credits(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import build_core

    user = UserRef.parse(args.user)
    core = await build_core(settings, with_runner=False)
    try:
        if args.credits_command == "grant":
            balance = await core.service.grant(
                user, args.amount, actor="cli", note=args.note or "granted from the command line"
            )
            print(f"{user}: {balance} credits")
            return 0
        status = await core.service.credits(user)
        refill = (
            status.next_allowance_at.strftime("%Y-%m-%d %H:%M UTC")
            if status.next_allowance_at
            else "never (one-time allowance)"
        )
        print(f"{user}: {status.balance} credits")
        default = f" ({core.service.models.default.name})" if status.models else ""
        print(
            f"  images left: {status.images_left} at {status.cost_per_image} credits each{default}"
        )
        if status.models:
            print("  models: " + core.service.models.price_list())
        print(f"  next allowance: {status.allowance} credits at {refill}")
        print(f"  jobs running: {status.active_jobs}")
        entries = await core.service.history(user, args.history)
        if entries:
            print("  recent ledger entries:")
            for entry in entries:
                job = f" job {entry.job_id[:8]}" if entry.job_id else ""
                note = f" ({entry.note})" if entry.note else ""
                print(f"    #{entry.id} {entry.kind.value:<7} {entry.amount:+d}{job}{note}")
        return 0
    finally:
        await core.close()


def _sqlite_file_exists(url: str) -> bool:
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return bool(database) and database != ":memory:" and Path(str(database)).expanduser().exists()


async def stored_limits(settings: Settings) -> list[str]:
    """The limits in force, each stored one beside the file's: ``check-config`` shows
    what the running bot uses, not only what the file says (issue 29). Reads without
    migrating or creating anything; a database not there yet holds no stored limit."""
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from bot.app import limits_from_settings
    from bot.credits.scopes import GLOBAL
    from bot.storage.database import open_database
    from bot.storage.schema import policies

    file_limits = limits_from_settings(settings)
    url = settings.storage.url
    if url.startswith("sqlite") and not await asyncio.to_thread(_sqlite_file_exists, url):
        return ["# limits: the file's (no database yet, so nothing stored)"]
    db = await open_database(url, run_migrations=False, pool_size=1)
    try:
        async with db.read() as conn:
            row = (await conn.execute(select(policies).where(policies.c.scope == GLOBAL))).first()
    except DBAPIError:
        return ["# limits: the file's (the database is not migrated yet)"]
    finally:
        await db.dispose()
    lines = ["# limits in force (kontext-bot policy limits changes them at run time):"]
    for name in LIMITS:
        configured = getattr(file_limits, name)
        stored = None if row is None else row._mapping[name]
        if row is None or stored is None:
            lines.append(f"#   {name}: {configured} (the file's)")
            continue
        when = datetime.fromtimestamp(float(row.updated_at), UTC).strftime("%Y-%m-%d")
        lines.append(
            f"#   {name}: {stored}, set by {row.updated_by} on {when}, file says {configured} "
            f"(kontext-bot policy limits --reset {name})"
        )
    return lines


async def provider_status(settings: Settings) -> int:
    from bot.providers.factory import base_url_for, build_provider

    provider = build_provider(settings)
    try:
        print(f"provider: {provider.name}")
        print(f"base_url: {base_url_for(settings)}")
        print(f"model: {provider.model}")
        if settings.models:
            from bot.credits.models import catalogue_for

            for model in catalogue_for(settings).models:
                served = ", ".join(f"{name}: {mid}" for name, mid in model.ids.items())
                print(f"model {model.name}: {model.cost} credits per image ({served})")
        else:
            print(f"cost per image (credits of this bot): {settings.credits.cost_per_image}")
        credits = getattr(provider, "credits", None)
        if credits is None:
            print(
                "account credits: this provider has no API to read them "
                "(kontext-bot check-config --online checks the key)"
            )
        else:
            print(f"account credits: {await credits()}")
    finally:
        await provider.aclose()
    return 0
