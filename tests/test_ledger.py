"""Credit ledger and job store: allowance, reservation, idempotency, no overspend."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import event, text

from bot.chat.texts import position_text
from bot.credits import ledger
from bot.credits.limits import Limits
from bot.credits.policies import PolicyBook
from bot.domain import EditOptions, JobState, UserRef
from bot.errors import QuotaError
from bot.jobs import reads as job_reads
from bot.jobs.queue import Charged, JobQueue, Refunded
from bot.jobs.reservations import NewJob
from bot.storage import Database
from tests.support import FakeClock

ALICE = UserRef("slack", "T1", "UALICE")
BOB = UserRef("discord", "42", "1001")


def new_job(user: UserRef = ALICE, key: str = "k1", cost: int = 120) -> NewJob:
    return NewJob(
        idempotency_key=key,
        user=user,
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(),
        reply_target={"channel": "C1"},
        cost=cost,
        provider="coretoday",
        model="black-forest-labs/flux-kontext-pro",
    )


async def entries(store: JobQueue, user: UserRef) -> list[tuple[str, int]]:
    async with store.db.transaction() as conn:
        rows = await ledger.recent_entries(conn, user, 100)
    return [(e.kind.value, e.amount) for e in reversed(rows)]


async def test_first_job_grants_allowance_then_reserves(store: JobQueue) -> None:
    stored = await store.create(new_job())
    assert not stored.duplicate
    assert stored.balance_after == 1080
    assert stored.job.state == JobState.QUEUED
    assert await entries(store, ALICE) == [("grant", 1200), ("reserve", -120)]


async def test_allowance_is_granted_once_per_period(store: JobQueue, clock: FakeClock) -> None:
    await store.create(new_job(key="a"))
    await store.create(new_job(key="b"))
    assert await store.balance(ALICE) == 960
    clock.advance(86_400)
    await store.create(new_job(key="c"))
    assert await store.balance(ALICE) == 1200 + 1200 - 360
    grants = [e for e in await entries(store, ALICE) if e[0] == "grant"]
    assert grants == [("grant", 1200), ("grant", 1200)]


async def test_quota_error_stores_nothing_and_says_when_it_refills(store: JobQueue) -> None:
    with pytest.raises(QuotaError) as info:
        await store.create(new_job(cost=5000))
    assert info.value.balance == 1200
    assert "1200 credits" in info.value.user_message
    assert "refills" in info.value.user_message
    assert await store.by_idempotency_key("k1") is None
    # The failed transaction left no trace: no job, no reservation.
    assert all(kind != "reserve" for kind, _ in await entries(store, ALICE))


async def test_same_idempotency_key_returns_first_job(store: JobQueue) -> None:
    first = await store.create(new_job(key="event-1"))
    second = await store.create(new_job(key="event-1"))
    assert second.duplicate
    assert second.job.id == first.job.id
    assert await store.balance(ALICE) == 1080


async def test_concurrent_duplicates_create_one_job(store: JobQueue) -> None:
    results = await asyncio.gather(*(store.create(new_job(key="same")) for _ in range(12)))
    assert len({r.job.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert await store.balance(ALICE) == 1080


async def test_concurrent_reservations_never_overspend(store: JobQueue) -> None:
    async def attempt(i: int, user: UserRef) -> bool:
        try:
            await store.create(new_job(user=user, key=f"{user}-{i}"))
            return True
        except QuotaError:
            return False

    outcomes = await asyncio.gather(*(attempt(i, user) for i in range(25) for user in (ALICE, BOB)))
    assert sum(outcomes) == 20  # 1200 / 120 = 10 each
    for user in (ALICE, BOB):
        assert await store.balance(user) == 0
        # The rows themselves: one allowance and exactly the ten reservations it paid for
        # (a race would show an eleventh reserve row, or a second grant covering it).
        assert await entries(store, user) == [("grant", 1200)] + [("reserve", -120)] * 10


async def test_charge_and_refund_happen_once(store: JobQueue) -> None:
    ok = (await store.create(new_job(key="ok"))).job
    bad = (await store.create(new_job(key="bad"))).job
    assert await store.finish(ok, Charged())
    assert await store.balance(ALICE) == 960
    assert not await store.finish(ok, Charged())
    assert not await store.finish(ok, Refunded("internal", "late"))
    assert await store.finish(bad, Refunded("provider_unavailable", "503"))
    assert await store.balance(ALICE) == 1080
    assert not await store.finish(bad, Refunded("provider_unavailable", "503"))
    assert not await store.finish(bad, Charged())
    kinds = [k for k, _ in await entries(store, ALICE)]
    assert kinds.count("charge") == 1
    assert kinds.count("refund") == 1
    assert (await store.get(ok.id)).state == JobState.SUCCEEDED  # type: ignore[union-attr]
    failed = await store.get(bad.id)
    assert failed is not None and failed.state == JobState.FAILED
    assert failed.error_kind == "provider_unavailable"


async def test_claim_respects_caps_and_leases(store: JobQueue, clock: FakeClock) -> None:
    for i in range(3):
        await store.create(new_job(key=f"a{i}"))
        clock.advance(1)
    await store.create(new_job(user=BOB, key="b0"))
    claimed = await store.claim("one", ["slack", "discord"], limit=10, lease_seconds=30)
    assert sorted(j.idempotency_key for j in claimed) == ["a0", "a1", "b0"]
    assert all(j.state == JobState.RUNNING for j in claimed)
    # A second runner finds nothing while the leases are live ...
    assert await store.claim("two", ["slack", "discord"], 10, 30) == []
    # ... and takes the jobs over once they expire (the first runner died).
    clock.advance(31)
    taken = await store.claim("two", ["slack", "discord"], 10, 30)
    assert sorted(j.idempotency_key for j in taken) == ["a0", "a1", "b0"]
    # Only platforms the runner serves are claimed.
    clock.advance(31)
    assert [j.idempotency_key for j in await store.claim("three", ["discord"], 10, 30)] == ["b0"]


async def test_claim_follows_the_per_user_cap_an_admin_stored(
    store: JobQueue, clock: FakeClock
) -> None:
    for i in range(3):
        await store.create(new_job(key=f"a{i}"))
        clock.advance(1)
    async with store.db.transaction() as conn:
        await store.policy_book.store(
            conn, "global", actor="cli:local:op", now=clock(), per_user_concurrent=1
        )
    assert [j.idempotency_key for j in await store.claim("one", ["slack"], 10, 30)] == ["a0"]
    async with store.db.transaction() as conn:
        await store.policy_book.store(
            conn, "global", actor="cli:local:op", now=clock(), per_user_concurrent=3
        )
    assert sorted(j.idempotency_key for j in await store.claim("one", ["slack"], 10, 30)) == [
        "a1",
        "a2",
    ]


async def test_renewed_leases_keep_jobs(store: JobQueue, clock: FakeClock) -> None:
    await store.create(new_job())
    assert len(await store.claim("one", ["slack"], 1, 30)) == 1
    clock.advance(20)
    assert await store.renew_leases("one", 30) == 1
    clock.advance(20)
    assert await store.claim("two", ["slack"], 1, 30) == []
    await store.release_leases("one")
    assert len(await store.claim("two", ["slack"], 1, 30)) == 1


async def test_queue_position_counts_waiting_jobs(store: JobQueue, clock: FakeClock) -> None:
    jobs = []
    for i in range(3):
        jobs.append((await store.create(new_job(user=BOB, key=f"q{i}"))).job)
        clock.advance(1)
    assert [await store.queue_position(j) for j in jobs] == [1, 2, 3]
    await store.claim("one", ["discord"], 1, 30)
    assert await store.queue_position(jobs[2]) == 2


async def test_balance_cap_limits_what_allowances_add(db: Database, clock: FakeClock) -> None:
    store = JobQueue(db, Limits(1200, "daily", max_balance=2000), clock)
    await store.create(new_job(key="a"))  # grant 1200, reserve 120 -> 1080
    clock.advance(86_400)
    await store.create(new_job(key="b"))  # the allowance tops up to 2000 at most: +920
    assert await store.balance(ALICE) == 2000 - 120
    clock.advance(86_400)
    await store.create(new_job(key="c"))
    assert await store.balance(ALICE) == 2000 - 120
    assert [a for k, a in await entries(store, ALICE) if k == "grant"] == [1200, 920, 120]


async def test_shared_budget_refuses_and_renews(db: Database, clock: FakeClock) -> None:
    store = JobQueue(db, Limits(1200, "daily", budget=360), clock)
    await store.create(new_job(user=ALICE, key="a1"))
    bob_job = (await store.create(new_job(user=BOB, key="b1"))).job
    await store.create(new_job(user=ALICE, key="a2"))
    with pytest.raises(QuotaError) as info:
        await store.create(new_job(user=BOB, key="b2"))
    assert "shared budget" in info.value.user_message and "renews" in info.value.user_message
    # A refund gives the budget back; a new day renews it.
    await store.finish(bob_job, Refunded("provider_unavailable", "down"))
    await store.create(new_job(user=BOB, key="b3"))
    clock.advance(86_400)
    await store.create(new_job(user=BOB, key="b4"))


async def test_shared_budget_holds_under_concurrency(db: Database, clock: FakeClock) -> None:
    store = JobQueue(db, Limits(1200, "daily", budget=600), clock)
    users = [UserRef("slack", "T1", f"U{i}") for i in range(8)]

    async def attempt(i: int) -> bool:
        try:
            await store.create(new_job(user=users[i % 8], key=f"k{i}"))
            return True
        except QuotaError:
            return False

    assert sum(await asyncio.gather(*(attempt(i) for i in range(24)))) == 5


async def test_cooldown_between_requests(db: Database, clock: FakeClock) -> None:
    store = JobQueue(db, Limits(1200, "daily", cooldown_seconds=30), clock)
    await store.create(new_job(key="a"))
    clock.advance(10)
    with pytest.raises(QuotaError) as info:
        await store.create(new_job(key="b"))
    assert "wait 20 s" in info.value.user_message
    await store.create(new_job(user=BOB, key="other user"))
    clock.advance(21)
    await store.create(new_job(key="c"))


async def test_a_redelivered_request_gets_its_job_not_a_refusal(
    db: Database, clock: FakeClock
) -> None:
    """Slack and Discord redeliver events: a second delivery of a request that was taken
    is answered with its job, although the first delivery's own reservation (a cooldown
    started, the balance spent) would refuse a new request."""
    store = JobQueue(db, Limits(120, "daily", cooldown_seconds=30), clock)
    first = await store.create(new_job(key="same event"))
    clock.advance(1)
    again = await store.create(new_job(key="same event"))
    assert again.duplicate and again.job.id == first.job.id
    # One reservation: the redelivery wrote no second row.
    assert await entries(store, ALICE) == [("grant", 120), ("reserve", -120)]
    with pytest.raises(QuotaError):
        await store.create(new_job(key="a new event"))


async def test_the_queue_position_is_counted_when_the_job_is_stored(
    store: JobQueue, clock: FakeClock, db: Database
) -> None:
    """The acknowledgement's position comes from the reserving transaction, together or
    alone, and agrees with a read afterwards."""
    alone = await store.create(new_job(user=BOB, key="alone"))
    clock.advance(1)
    users = [UserRef("slack", "T1", f"U{i}") for i in range(4)]
    together = await asyncio.gather(
        *(store.create(new_job(user=u, key=f"t{i}")) for i, u in enumerate(users))
    )
    assert alone.queue_position == 1
    for reserved in together:
        assert reserved.queue_position == await store.queue_position(reserved.job) == 5


async def test_a_long_queue_is_counted_only_up_to_the_cap(
    store: JobQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The position walks the queue's index: a backlog of tens of thousands is counted
    up to the cap (1,000; 3 here) and shown as "1,000+", not walked whole each time."""
    monkeypatch.setattr(job_reads, "QUEUE_POSITION_CAP", 3)
    users = [UserRef("slack", "T1", f"U{i}") for i in range(5)]
    made = [await store.create(new_job(user=u, key=f"c{i}")) for i, u in enumerate(users)]
    assert [r.queue_position for r in made] == [1, 2, 3, 3, 3]
    assert position_text(999) == "999" and position_text(1000) == "1,000+"


async def test_locked_account_holds_off_a_second_transaction(db: Database) -> None:
    """``lock_account`` (one INSERT ... ON CONFLICT on PostgreSQL) must block another
    transaction on the same account until the first ends, for new and existing rows."""
    assert await _second_lock_waits(db) == ["first commits", "second locked"]  # new row
    assert await _second_lock_waits(db) == ["first commits", "second locked"]  # existing


async def _second_lock_waits(db: Database) -> list[str]:
    first_locked = asyncio.Event()
    release = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with db.transaction() as conn:
            await ledger.lock_account(conn, ALICE, 1.0)
            first_locked.set()
            await release.wait()
            order.append("first commits")

    async def second() -> None:
        await first_locked.wait()
        async with db.transaction() as conn:
            await ledger.lock_account(conn, ALICE, 2.0)
            order.append("second locked")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_locked.wait()
    await asyncio.sleep(0.3)  # time for the second to reach the lock, if it could
    assert order == []
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return order


async def test_locking_an_existing_account_leaves_its_row_as_it_was(db: Database) -> None:
    """On PostgreSQL not even a new row version (xmin): the lock writes nothing."""
    async with db.transaction() as conn:
        await ledger.lock_account(conn, ALICE, 1.0)
    version = "xmin::text" if db.dialect == "postgresql" else "'no versions'"
    query = text(f"SELECT {version}, created_at FROM accounts WHERE user_ref = :ref")
    async with db.read() as conn:
        before = (await conn.execute(query, {"ref": str(ALICE)})).one()
    async with db.transaction() as conn:
        await ledger.lock_account(conn, ALICE, 5.0)
    async with db.read() as conn:
        after = (await conn.execute(query, {"ref": str(ALICE)})).one()
    assert after == before  # same version, and created_at kept from the first lock


async def test_mark_delivering_leaves_a_finished_job_alone(store: JobQueue) -> None:
    stored = await store.create(new_job())
    balance = await store.mark_delivering(stored.job.id, "/out/a.png", {}, user=ALICE)
    assert balance == 1200 - 120
    other = (await store.create(new_job(key="k2"))).job
    assert await store.finish(other, Refunded("provider_unavailable", "gone"))
    # Another process finished it meanwhile: nothing changes and the runner is told so.
    assert await store.mark_delivering(other.id, "/out/b.png", {}, user=ALICE) is None
    finished = await store.get(other.id)
    assert finished is not None
    assert (finished.state, finished.output_path) == (JobState.FAILED, None)


# -- credits.budget_period: the budget's own period (issue 29) ------------------------------


def monthly_budget_store(db: Database, clock: FakeClock, budget: int) -> JobQueue:
    limits = Limits(1200, "daily", budget=budget)
    return JobQueue(db, limits, clock, PolicyBook(limits, budget_period="monthly"))


async def test_a_monthly_budget_outlasts_the_daily_allowance(
    db: Database, clock: FakeClock
) -> None:
    clock.now = 1_764_547_200.0 + 3600  # 2025-12-01 01:00 UTC: the start of a month
    store = monthly_budget_store(db, clock, budget=360)
    await store.create(new_job(user=ALICE, key="d1"))
    clock.advance(86_400)  # a new day: a new allowance, the same month's budget
    await store.create(new_job(user=ALICE, key="d2"))
    clock.advance(86_400)
    await store.create(new_job(user=BOB, key="d3"))
    clock.advance(86_400)
    with pytest.raises(QuotaError) as info:
        await store.create(new_job(user=BOB, key="d4"))
    assert "shared budget" in info.value.user_message
    assert "renews 2026-01-01 00:00 UTC" in info.value.user_message
    assert await store.balance(BOB) == 1200 - 120  # the day's allowance is still there
    clock.now = 1_767_225_600.0 + 60  # 2026-01-01: a new month renews the budget
    await store.create(new_job(user=BOB, key="d5"))


async def test_the_budget_period_defaults_to_the_allowances(db: Database, clock: FakeClock) -> None:
    limits = Limits(1200, "daily", budget=120)
    store = JobQueue(db, limits, clock, PolicyBook(limits))
    await store.create(new_job(user=ALICE, key="x1"))
    with pytest.raises(QuotaError):
        await store.create(new_job(user=BOB, key="x2"))
    clock.advance(86_400)
    await store.create(new_job(user=BOB, key="x3"))


async def test_a_budget_of_its_own_period_holds_under_concurrency(
    db: Database, clock: FakeClock
) -> None:
    clock.now = 1_764_547_200.0 + 3600  # 2025-12-01 01:00 UTC
    store = monthly_budget_store(db, clock, budget=600)
    users = [UserRef("slack", "T1", f"U{i}") for i in range(8)]

    async def attempt(i: int) -> bool:
        try:
            await store.create(new_job(user=users[i % 8], key=f"m{i}"))
            return True
        except QuotaError:
            return False

    assert sum(await asyncio.gather(*(attempt(i) for i in range(24)))) == 5
    clock.now = 1_764_547_200.0 + 3600 + 86_400  # the next day, the same month
    # New allowances for everyone, but the month's budget is spent: nobody gets through.
    assert sum(await asyncio.gather(*(attempt(i) for i in range(24, 32)))) == 0


async def test_the_config_key_reaches_the_budget(tmp_path: Path) -> None:
    from bot.app import build_core
    from tests.support import make_settings

    settings = make_settings(
        tmp_path, credits={"budget": 120, "period": "daily", "budget_period": "weekly"}
    )
    core = await build_core(settings, with_runner=False)
    try:
        book = core.store.policy_book
        assert book.budget_period_of(await core.service.limits()) == "weekly"
    finally:
        await core.close()
    plain = make_settings(tmp_path, credits={"budget": 120, "period": "daily"})
    core = await build_core(plain, with_runner=False)
    try:
        assert core.store.policy_book.budget_period_of(await core.service.limits()) == "daily"
    finally:
        await core.close()


async def test_a_reservation_is_six_statements_alone_and_together(store: JobQueue) -> None:
    """Issue 25: the queue ahead is read with the balances, so a reservation is six
    statements (idempotency look-up, accounts locked, policies, balances and queue, the
    job, the ledger entry); it was seven with the count after the insert. A batch of
    three users is the same six statements, and the positions are what a count after
    the insert gives."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA")):
            statements.append(statement)

    engine = store.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        alone = await store.create(new_job(user=ALICE, key="s1"))
        assert len(statements) == 6, statements
        statements.clear()
        users = [UserRef("slack", "T1", f"U{i}") for i in range(3)]
        together = await asyncio.gather(
            *(store.create(new_job(user=u, key=f"b{i}")) for i, u in enumerate(users))
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert alone.queue_position == 1
    # The first request of the three may have gone alone while the batch formed behind it.
    assert len(statements) in (6, 12), statements
    for reserved in together:
        assert reserved.queue_position == await store.queue_position(reserved.job)
    assert sorted(r.queue_position for r in together)[-1] == 4


async def test_a_group_reservation_is_the_same_statements_for_two_and_four(
    store: JobQueue,
) -> None:
    """Variations (``--n``): a group's jobs go in as one insert and their reservations
    as one statement through the bank's batch path (``post_entries``), so four members
    cost the statements of two; each member still has its own reserve entry."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "PRAGMA")):
            statements.append(statement)

    def group(user: UserRef, key: str, size: int) -> list[NewJob]:
        return [
            replace(
                new_job(user=user, key=key if i == 1 else f"{key}#{i}"),
                group_id=f"{key:0<32}"[:32],
                group_index=i,
                group_size=size,
            )
            for i in range(1, size + 1)
        ]

    engine = store.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        await store.create_group(group(ALICE, "g2", 2))
        two = len(statements)
        statements.clear()
        bob = UserRef("slack", "T1", "UBOB")
        four = await store.create_group(group(bob, "g4", 4))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == two, statements
    ledger_inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO LEDGER")]
    assert len(ledger_inserts) <= 2, "the allowance and the four reservations, batched"
    assert [r.job.group_index for r in four] == [1, 2, 3, 4]
    assert all(r.balance_after == 1200 - 4 * 120 for r in four)
    assert await store.balance(bob) == 1200 - 4 * 120
    entries = await store.bank.history(bob, 10)
    assert sorted(e.kind.value for e in entries) == ["grant"] + ["reserve"] * 4
