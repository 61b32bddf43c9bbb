"""Quota policies: overrides per workspace, channel, role and user, pauses, the admin API
and its audit trail; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.credits import ledger
from bot.credits.ledger import EntryKind
from bot.credits.limits import Limits
from bot.credits.policies import Override, PolicyBook, effective_policy
from bot.domain import EditOptions, EditRequest, RequestContext, UserRef
from bot.errors import QuotaError, UserInputError
from bot.jobs.service import KontextService
from bot.jobstore import JobStore
from bot.providers.base import ProviderCapabilities
from bot.storage import Database
from tests.fakes.coretoday import FakeCoreToday
from tests.support import FakeClock, environment, run

GUILD = "9876"
ALICE = UserRef("discord", GUILD, "1001")
BOB = UserRef("discord", GUILD, "1002")
OWNER = UserRef("discord", GUILD, "1")
OTHER_GUILD_MOD = UserRef("discord", "5555", "7")
SUPPORTERS = "777"
ART = "555"
BASE = Limits(allowance=1200, period="daily")


def service(
    db: Database, clock: FakeClock, configured: list[Override] | None = None
) -> KontextService:
    store = JobStore(db, BASE, clock, PolicyBook(BASE, configured or []))
    return KontextService(
        store,
        ProviderCapabilities(cost_per_image=120),
        provider_name="coretoday",
        model="m",
        max_input_bytes=20_000_000,
        admins=[str(OWNER)],
        platform_admins=True,
    )


def request(user: UserRef, key: str, context: RequestContext | None = None) -> EditRequest:
    return EditRequest(
        user=user,
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(),
        reply_target={},
        idempotency_key=key,
        context=context or RequestContext(),
    )


def test_most_generous_applicable_override_wins_and_a_users_own_wins_outright() -> None:
    overrides = {
        f"workspace:discord:{GUILD}": Override("w", allowance=600, period="daily"),
        f"role:discord:{GUILD}:{SUPPORTERS}": Override("r", allowance=6000, period="weekly"),
        f"channel:discord:{GUILD}:{ART}": Override("c", allowance=50_000, period="monthly"),
    }
    # 1200 daily (36,000 a month) beats 6000 weekly (25,714) and 600 daily.
    no_channel = {k: v for k, v in overrides.items() if "channel" not in k}
    assert effective_policy(BASE, ALICE, no_channel) == BASE
    best = effective_policy(BASE, ALICE, overrides)
    assert (best.allowance, best.period) == (50_000, "monthly")
    own = {**overrides, f"user:{ALICE}": Override("u", allowance=100, period=None)}
    mine = effective_policy(BASE, ALICE, own)
    assert (mine.allowance, mine.period) == (100, "daily"), "an admin's choice for this user"
    assert best.max_balance == BASE.max_balance and best.budget == BASE.budget


async def test_role_override_from_config_applies_to_members_with_the_role(
    db: Database, clock: FakeClock
) -> None:
    svc = service(
        db,
        clock,
        [Override(f"role:discord:{GUILD}:{SUPPORTERS}", allowance=60_000, period="monthly")],
    )
    supporter = RequestContext(channel="1", roles=(SUPPORTERS,))
    ack = await svc.submit(request(ALICE, "a", supporter))
    assert ack.balance_after == 60_000 - 120
    ack = await svc.submit(request(BOB, "b", RequestContext(channel="1")))
    assert ack.balance_after == 1200 - 120
    status = await svc.credits(ALICE, supporter)
    assert (status.allowance, status.next_allowance_at is not None) == (60_000, True)


async def test_admin_sets_a_channel_allowance_at_run_time_and_it_is_stored(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    scope = f"channel:discord:{GUILD}:{ART}"
    await svc.admin_set_allowance(OWNER, scope, 5000, "daily")
    in_art = RequestContext(channel=ART)
    assert (await svc.submit(request(ALICE, "a", in_art))).balance_after == 4880
    # A second process (or a restart) reads the same stored policy.
    again = service(db, clock)
    assert (await again.credits(BOB, in_art)).allowance == 5000
    assert (await again.credits(BOB, RequestContext(channel="other"))).allowance == 1200
    await again.admin_set_allowance(OWNER, scope, None)
    assert (await svc.credits(UserRef("discord", GUILD, "1003"), in_art)).allowance == 1200


async def test_stored_policy_wins_over_the_config_for_its_scope(
    db: Database, clock: FakeClock
) -> None:
    scope = f"workspace:discord:{GUILD}"
    svc = service(db, clock, [Override(scope, allowance=3000, period="daily")])
    assert (await svc.credits(ALICE)).allowance == 3000
    await svc.admin_set_allowance(OWNER, scope, 2400)
    assert (await svc.credits(BOB)).allowance == 2400


async def test_pause_refuses_new_requests_without_charging_and_resume_reopens(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    await svc.admin_pause(OWNER, f"workspace:discord:{GUILD}", True)
    with pytest.raises(QuotaError, match="paused"):
        await svc.submit(request(ALICE, "a"))
    assert (await svc.credits(ALICE)).balance == 1200, "nothing reserved"
    other = UserRef("discord", "5555", "1")
    assert (await svc.submit(request(other, "b"))).balance_after == 1080, "other servers go on"
    await svc.admin_pause(OWNER, f"workspace:discord:{GUILD}", False)
    assert (await svc.submit(request(ALICE, "c"))).balance_after == 1080


async def test_channel_pause_only_stops_that_channel(db: Database, clock: FakeClock) -> None:
    svc = service(db, clock)
    await svc.admin_pause(OWNER, f"channel:discord:{GUILD}:{ART}", True)
    with pytest.raises(QuotaError, match="paused"):
        await svc.submit(request(ALICE, "a", RequestContext(channel=ART)))
    assert (await svc.submit(request(ALICE, "b", RequestContext(channel="2")))).duplicate is False


async def test_admin_actions_are_in_the_ledger_with_who_did_them(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    mod = UserRef("discord", GUILD, "42")
    await svc.admin_pause(mod, f"workspace:discord:{GUILD}", True, platform_admin=True)
    await svc.admin_set_allowance(OWNER, f"user:{ALICE}", 50, "weekly")
    await svc.admin_grant(OWNER, BOB, 600)
    async with db.read() as conn:
        pauses = await ledger.recent_entries(conn, f"workspace:discord:{GUILD}")
        allowances = await ledger.recent_entries(conn, f"user:{ALICE}")
        grants = await ledger.recent_entries(conn, BOB)
    assert [(e.kind, e.amount, e.actor) for e in pauses] == [(EntryKind.ADMIN, 0, str(mod))]
    assert pauses[0].note == f"paused workspace:discord:{GUILD}"
    assert allowances[0].note == f"allowance of user:{ALICE} set to 50 weekly"
    assert grants[0].actor == str(OWNER) and grants[0].amount == 600
    assert (await svc.credits(ALICE)).allowance == 50


async def test_platform_admins_act_only_in_their_own_workspace(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    with pytest.raises(UserInputError, match="own workspace"):
        await svc.admin_pause(
            OTHER_GUILD_MOD, f"workspace:discord:{GUILD}", True, platform_admin=True
        )
    with pytest.raises(UserInputError, match="Only the bot's admins"):
        await svc.admin_pause(ALICE, f"workspace:discord:{GUILD}", True)
    with pytest.raises(UserInputError, match="own workspace"):
        await svc.admin_grant(OTHER_GUILD_MOD, ALICE, 100, platform_admin=True)
    # credits.admins act anywhere.
    await svc.admin_pause(OWNER, "workspace:discord:5555", True)


async def test_platform_admin_flag_counts_only_when_the_operator_enables_it(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    svc.platform_admins = False
    with pytest.raises(UserInputError, match="Only the bot's admins"):
        await svc.admin_grant(UserRef("discord", GUILD, "42"), ALICE, 100, platform_admin=True)


async def test_bad_scopes_and_amounts_get_clear_messages(db: Database, clock: FakeClock) -> None:
    svc = service(db, clock)
    with pytest.raises(UserInputError, match="is not a scope"):
        await svc.admin_pause(OWNER, "guild:9876", True)
    with pytest.raises(UserInputError, match="cannot be negative"):
        await svc.admin_set_allowance(OWNER, f"workspace:discord:{GUILD}", -5)


async def test_top_spenders_of_the_period(db: Database, clock: FakeClock) -> None:
    svc = service(db, clock)
    for n in range(3):
        await svc.submit(request(ALICE, f"a{n}"))
    await svc.submit(request(BOB, "b0"))
    top = await svc.admin_top_spenders(OWNER)
    assert top == [(str(ALICE), 360), (str(BOB), 120)]


async def test_cli_policy_commands(tmp_path: Path, fake: FakeCoreToday) -> None:
    env = environment(tmp_path, fake)
    scope = f"role:discord:{GUILD}:{SUPPORTERS}"
    set_ = await run(["policy", "allowance", scope, "6000", "--period", "weekly"], env, tmp_path)
    assert set_.code == 0, set_.stderr
    assert set_.stdout.strip() == f"{scope}: allowance 6000 weekly; active"
    paused = await run(["policy", "pause", f"workspace:discord:{GUILD}"], env, tmp_path)
    assert paused.stdout.strip() == f"workspace:discord:{GUILD}: allowance the config's; PAUSED"
    off = await run(["policy", "allowance", scope, "off"], env, tmp_path)
    assert off.stdout.strip() == f"{scope}: no override (the config's allowance applies)"
    bad = await run(["policy", "pause", "guild:1"], env, tmp_path)
    assert bad.code == 1 and "is not a scope" in bad.stderr
    wrong = await run(["policy", "allowance", scope, "lots"], env, tmp_path)
    assert wrong.code == 1 and "'lots' is not a number" in wrong.stderr
    limits = await run(
        ["policy", "limits", "--budget", "50000", "--cooldown", "10", "--concurrent", "1"],
        env,
        tmp_path,
    )
    assert limits.stdout.strip() == (
        "allowance 1200 daily; max_balance 0; budget 50000 per daily; cooldown 10 s (0: none);"
        " jobs per user at once 1"
    )
    shown = await run(["policy", "limits"], env, tmp_path)
    assert shown.stdout == limits.stdout, "stored: a new process sees the same limits"


async def test_operator_limits_change_at_run_time_for_everyone(
    db: Database, clock: FakeClock
) -> None:
    svc = service(db, clock)
    now = await svc.admin_set_limits(OWNER, budget=240, cooldown_seconds=30)
    assert (now.budget, now.cooldown_seconds, now.allowance) == (240, 30, 1200)
    await svc.submit(request(ALICE, "a"))
    with pytest.raises(QuotaError, match="wait 30 s"):
        await svc.submit(request(ALICE, "b"))
    clock.advance(31)
    await svc.submit(request(ALICE, "c"))
    with pytest.raises(QuotaError, match="shared budget"):
        await svc.submit(request(BOB, "d"))
    # Another process on the same database sees the same limits.
    assert (await service(db, clock).limits()).budget == 240
    await svc.admin_set_limits(OWNER, budget=0, max_balance=600)
    assert (await svc.submit(request(BOB, "e"))).balance_after == 600 - 120, "capped"


async def test_global_pause_and_who_may_change_limits(db: Database, clock: FakeClock) -> None:
    svc = service(db, clock)
    mod = UserRef("discord", GUILD, "42")
    with pytest.raises(UserInputError, match="Only the bot's admins"):
        await svc.admin_set_limits(mod, budget=1)
    with pytest.raises(UserInputError, match="own workspace"):
        await svc.admin_pause(mod, "global", True, platform_admin=True)
    with pytest.raises(UserInputError, match="cannot be negative"):
        await svc.admin_set_limits(OWNER, cooldown_seconds=-1)
    with pytest.raises(UserInputError, match="at least one"):
        await svc.admin_set_limits(OWNER)
    for held_forever_or_too_many in (0, 101):
        with pytest.raises(UserInputError, match="between 1 and 100"):
            await svc.admin_set_limits(OWNER, per_user_concurrent=held_forever_or_too_many)
    assert (await svc.limits()).per_user_concurrent == 2, "refused changes stored nothing"
    await svc.admin_pause(OWNER, "global", True)
    with pytest.raises(QuotaError, match="paused"):
        await svc.submit(request(UserRef("slack", "T1", "U1"), "x"))
    async with db.read() as conn:
        (entry,) = await ledger.recent_entries(conn, "global")
    assert entry.actor == str(OWNER) and entry.note == "paused global"


async def test_requests_arriving_together_are_reserved_in_one_batch(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Group commit: same outcomes as one at a time, in fewer transactions."""
    import bot.jobs.reservations

    sizes: list[int] = []
    real = bot.jobs.reservations.reserve_batch

    async def counting(conn: Any, items: Any, *args: Any) -> Any:
        sizes.append(len(items))
        return await real(conn, items, *args)

    monkeypatch.setattr(bot.jobs.reservations, "reserve_batch", counting)
    svc = service(db, clock, [Override("workspace:discord:5555", paused=True)])
    await svc.admin_set_allowance(OWNER, f"user:{BOB}", 120)  # one image for Bob
    first = await svc.submit(request(ALICE, "alice-0"))
    users = [UserRef("discord", GUILD, f"u{n}") for n in range(30)]
    outcomes = await asyncio.gather(
        *(svc.submit(request(u, f"k-{u.user}")) for u in users),
        svc.submit(request(BOB, "bob-1")),
        svc.submit(request(UserRef("discord", "5555", "p"), "paused")),
        svc.submit(request(ALICE, "alice-0")),  # a redelivered event
        return_exceptions=True,
    )
    assert max(sizes) > 1, "at least one batch held several requests"
    accepted = [o for o in outcomes[:30] if not isinstance(o, BaseException)]
    assert all(o.balance_after == 1080 and not o.duplicate for o in accepted)
    assert len(accepted) == 30
    bob = outcomes[30]
    assert not isinstance(bob, BaseException) and bob.balance_after == 0
    assert isinstance(outcomes[31], QuotaError) and "paused" in str(outcomes[31].user_message)
    again = outcomes[32]
    assert not isinstance(again, BaseException)
    assert again.duplicate and again.job.id == first.job.id
    with pytest.raises(QuotaError, match="You have 0 credits"):
        await svc.submit(request(BOB, "bob-2"))
    async with db.read() as conn:
        for user in [*users, BOB, ALICE]:
            entries = await ledger.recent_entries(conn, user, 100)
            assert sum(e.amount for e in entries) == await ledger.balance(conn, user) >= 0
            assert len([e for e in entries if e.kind == EntryKind.GRANT]) == 1
            assert len([e for e in entries if e.kind == EntryKind.RESERVE]) == 1


def test_each_limit_is_named_once_in_the_schema() -> None:
    """The config, the stored ``global`` row, the admin API and the CLI all go by the
    schema in bot.credits.limits: a limit there is a config key with the same default, a column
    of ``policies`` and an option of ``kontext-bot policy limits``."""
    from bot.app import limits_from_settings
    from bot.cli import build_parser
    from bot.config import Settings
    from bot.credits.limits import LIMITS, validate_changes
    from bot.storage.schema import policies

    assert limits_from_settings(Settings()) == Limits(), "config defaults are the schema's"
    assert set(LIMITS) <= set(policies.c.keys()), "each limit has its column (a migration)"
    args = build_parser().parse_args(["policy", "limits", "--concurrent", "3", "--cooldown", "5"])
    assert {name: getattr(args, name) for name in LIMITS} == {
        "allowance": None,
        "period": None,
        "max_balance": None,
        "budget": None,
        "cooldown_seconds": 5.0,
        "per_user_concurrent": 3,
    }
    assert validate_changes({"budget": 10, "period": None}) == {"budget": 10}
    with pytest.raises(UserInputError, match="'speed' is not a limit"):
        validate_changes({"speed": 1})
    with pytest.raises(UserInputError, match="'hourly' is not a period"):
        validate_changes({"period": "hourly"})
    with pytest.raises(UserInputError, match="must be a whole number"):
        validate_changes({"budget": "10"})
