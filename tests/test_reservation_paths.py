"""The two reservation paths decide alike (issue 25, step 2).

Requests that arrive together are reserved as one batch (``Reservations._create_batch``,
set-based statements); a request alone is a batch of one (``Reservations._create``); and
the operator's cooldown and shared budget take a per-request path
(``_create_with_limits``). All must give every request the same answer: accepted with
the same balance, or refused with the same words, and the same ledger rows. Hypothesis
draws the limits, the users' overrides, their earlier grants and the costs; each example
reserves the same requests the three ways, for three sets of users that differ only in
their workspace, in one fresh database.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.credits import ledger
from bot.credits.limits import Limits
from bot.credits.policies import Override, PolicyBook
from bot.domain import EditOptions, UserRef
from bot.errors import QuotaError
from bot.jobs.reservations import NewJob, Reserved, new_job_id, queued_job
from bot.jobstore import JobStore
from bot.storage import open_database
from tests.pg import Cluster
from tests.support import FakeClock, fresh_database

SINGLE, BATCH, CHECKED = "TSINGLE", "TBATCH", "TCHECKED"
SPACES = (SINGLE, BATCH, CHECKED)


@dataclass(frozen=True)
class Asker:
    """One user's situation before the request, and what the request costs."""

    override: int | None  # an allowance of their own (user scope)
    paused: bool  # a pause on their own scope
    granted: int  # an admin's earlier grant (0: none)
    cost: int


askers = st.builds(
    Asker,
    override=st.none() | st.integers(0, 3000),
    paused=st.booleans(),
    granted=st.sampled_from([0, 0, 50, 120, 1000]),
    cost=st.sampled_from([0, 60, 120, 500, 1300, 2500]),
)
limits = st.builds(
    Limits,
    allowance=st.sampled_from([0, 120, 1200]),
    period=st.sampled_from(["daily", "weekly", "never"]),
    max_balance=st.sampled_from([0, 1000, 2000]),
)


def user(space: str, index: int) -> UserRef:
    return UserRef("slack", space, f"U{index}")


def request(space: str, index: int, asker: Asker) -> NewJob:
    return NewJob(
        idempotency_key=f"{space}-{index}",
        user=user(space, index),
        prompt="make it a watercolor",
        options=EditOptions(),
        attachments=(),
        reply_target={"channel": "C1"},
        cost=asker.cost,
        provider="coretoday",
        model="black-forest-labs/flux-kontext-pro",
    )


def outcome(result: Reserved | BaseException) -> tuple[object, ...]:
    if isinstance(result, Reserved):
        return ("accepted", result.balance_after, result.duplicate)
    assert isinstance(result, QuotaError), repr(result)
    return ("refused", result.user_message, result.balance)


async def both_ways(base: Limits, people: list[Asker], url: str) -> None:
    overrides = [
        Override(scope=f"user:{user(space, i)}", allowance=a.override, paused=a.paused)
        for space in SPACES
        for i, a in enumerate(people)
        if a.override is not None or a.paused
    ]
    db = await open_database(url)
    try:
        clock = FakeClock(1_750_000_000.0)
        store = JobStore(db, base, clock, PolicyBook(base, overrides))
        for space in SPACES:
            for i, a in enumerate(people):
                if a.granted:
                    await store.bank.grant(user(space, i), a.granted, actor="test", note=None)
        single: list[Reserved | BaseException] = []
        for i, a in enumerate(people):
            try:
                single.append(await store.reservations._create(request(SINGLE, i, a)))
            except QuotaError as exc:
                single.append(exc)
        batch = await store.reservations._create_batch(
            [request(BATCH, i, a) for i, a in enumerate(people)]
        )
        # The per-request path the operator's cooldown and budget take, with neither set.
        checked: list[Reserved | BaseException] = []
        for i, a in enumerate(people):
            new, now = request(CHECKED, i, a), clock()
            try:
                async with db.transaction() as conn:
                    await ledger.lock_account(conn, new.user, now)
                    job = queued_job(new, new_job_id(), now)
                    checked.append(
                        await store.reservations._create_with_limits(conn, new, job, now)
                    )
            except QuotaError as exc:
                checked.append(exc)
        assert [outcome(o) for o in batch] == [outcome(o) for o in single]
        assert [outcome(o) for o in checked] == [outcome(o) for o in single]
        async with db.read() as conn:
            for i in range(len(people)):
                rows = {}
                for space in SPACES:
                    entries = await ledger.recent_entries(conn, user(space, i), 50)
                    rows[space] = [(e.kind, e.amount, e.note) for e in reversed(entries)]
                assert rows[BATCH] == rows[SINGLE] == rows[CHECKED], people[i]
    finally:
        await db.dispose()


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
people_lists = st.lists(askers, min_size=1, max_size=6)


@PROPERTY_SETTINGS
@given(base=limits, people=people_lists)
def test_a_batch_and_one_at_a_time_give_the_same_outcome_on_sqlite(
    base: Limits, people: list[Asker]
) -> None:
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(both_ways(base, people, f"sqlite:///{Path(root) / 'kontext.db'}"))


@settings(PROPERTY_SETTINGS, max_examples=15)
@given(base=limits, people=people_lists)
def test_a_batch_and_one_at_a_time_give_the_same_outcome_on_postgresql(
    pg_cluster: Cluster | str, base: Limits, people: list[Asker]
) -> None:
    """PostgreSQL's batch statements differ (row locks, ON CONFLICT); the rules must not."""
    if isinstance(pg_cluster, str):
        pytest.skip(f"PostgreSQL could not be started: {pg_cluster}")

    async def run() -> None:
        await both_ways(base, people, await fresh_database(pg_cluster))

    asyncio.run(run())
