"""What the dashboard reads: aggregates over the ledger (the source of truth for money)
and the jobs table, one function per figure.

Every query is bounded by time (the last 30 days, this period, a date range) or by a
limit, and each filters on an indexed column (``ledger.created_at``, ``jobs.created_at``,
``ledger.user_ref``; migration 0007), so a page stays fast on a year of data
(bench/dashboard.py measures each page at 1M ledger entries). Days are UTC days,
``floor(created_at / 86400)``, as ``bot.credits.periods`` counts them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    cast,
    func,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits.ledger import SPENDING, EntryKind
from bot.domain import Job, UserRef
from bot.jobs.reads import row_to_job
from bot.storage.database import Database
from bot.storage.schema import jobs, ledger

DAY = 86400
# Failures that are the provider or the checks refusing the request's content, as
# opposed to something going wrong (bot.errors.ErrorKind values).
REFUSED_KINDS = frozenset({"moderation", "user_input"})
CSV_BATCH = 5000


def day_of(conn: AsyncConnection, column: Any) -> ColumnElement[int]:
    """The UTC day number of an epoch-seconds column. SQLite's CAST truncates (times are
    positive, so that is floor); PostgreSQL's rounds, hence its explicit floor."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor(column / DAY), BigInteger)
    return cast(column / DAY, Integer)


def platform_of(conn: AsyncConnection, column: Any) -> ColumnElement[str]:
    """The platform of a UserRef column: the text before its first colon."""
    if conn.dialect.name == "postgresql":
        return func.split_part(column, ":", 1)
    return func.substr(column, 1, func.instr(column, ":") - 1)


@dataclass(frozen=True)
class Daily:
    """The ledger's last days: credits spent per (UTC day, platform), refunds per day."""

    spend: dict[tuple[int, str], int]
    refunds: dict[int, int]


async def ledger_per_day(conn: AsyncConnection, first_day: int) -> Daily:
    """Credits spent (reserved and not refunded: the sum ``bot.credits.ledger.spent_since``
    takes) per (UTC day, platform) from ``first_day`` on, and the refunds booked per day,
    in one pass over those days' entries."""
    day = day_of(conn, ledger.c.created_at).label("day")
    platform = platform_of(conn, ledger.c.user_ref).label("platform")
    rows = await conn.execute(
        select(
            day,
            platform,
            ledger.c.kind,
            func.sum(ledger.c.amount).label("amount"),
            func.count().label("n"),
        )
        .where(ledger.c.kind.in_(SPENDING), ledger.c.created_at >= first_day * DAY)
        .group_by(day, platform, ledger.c.kind)
    )
    spend: dict[tuple[int, str], int] = defaultdict(int)
    refunds: dict[int, int] = defaultdict(int)
    for r in rows:
        spend[(int(r.day), str(r.platform))] -= int(r.amount)
        if r.kind == EntryKind.REFUND.value:
            refunds[int(r.day)] += int(r.n)
    return Daily(dict(spend), dict(refunds))


def outcome_of(state: str, error_kind: str | None) -> str:
    """A job's outcome as the overview counts it: delivered, refused (moderation, bad
    input), failed: <reason>, canceled, or in progress."""
    if state == "succeeded":
        return "delivered"
    if state == "failed":
        if error_kind in REFUSED_KINDS:
            return "refused"
        return f"failed: {error_kind or 'unknown'}"
    if state == "canceled":
        return "canceled"
    return "in progress"


async def outcomes_per_day(
    conn: AsyncConnection, first_day: int, refunds: dict[int, int]
) -> dict[int, dict[str, int]]:
    """Jobs per UTC day (of their creation) by outcome, with the refunds booked that day
    (from the ledger: a refund is money, not a job state)."""
    found: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    day = day_of(conn, jobs.c.created_at).label("day")
    rows = await conn.execute(
        select(day, jobs.c.state, jobs.c.error_kind, func.count().label("n"))
        .where(jobs.c.created_at >= first_day * DAY)
        .group_by(day, jobs.c.state, jobs.c.error_kind)
    )
    for r in rows:
        found[int(r.day)][outcome_of(r.state, r.error_kind)] += int(r.n)
    for refund_day, n in refunds.items():
        found[refund_day]["refunded"] += n
    return {d: dict(counts) for d, counts in found.items()}


@dataclass(frozen=True)
class JobFilter:
    state: str = ""
    platform: str = ""
    user: str = ""


async def recent_jobs(conn: AsyncConnection, where: JobFilter, limit: int = 100) -> list[Job]:
    """The newest jobs matching the filter (each filter exact; empty means any)."""
    query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    if where.state:
        query = query.where(jobs.c.state == where.state)
    if where.platform:
        query = query.where(jobs.c.platform == where.platform)
    if where.user:
        query = query.where(jobs.c.user_ref == where.user)
    return [row_to_job(row) for row in await conn.execute(query)]


async def user_known(conn: AsyncConnection, user: UserRef) -> bool:
    """Whether the ledger holds anything of the user (the page of an unknown user is a
    404, and looking must not open an account)."""
    found = await conn.scalar(select(ledger.c.id).where(ledger.c.user_ref == str(user)).limit(1))
    return found is not None


LEDGER_EXPORT = (
    ledger.c.id,
    ledger.c.created_at,
    ledger.c.user_ref,
    ledger.c.kind,
    ledger.c.amount,
    ledger.c.job_id,
    ledger.c.actor,
    ledger.c.note,
)


async def ledger_rows(db: Database, start: float, end: float) -> AsyncIterator[Sequence[Any]]:
    """The ledger entries with ``start <= created_at < end`` in time order, as tuples of
    ``LEDGER_EXPORT``'s columns, read in batches of ``CSV_BATCH`` (each its own short read
    transaction, resumed after the last row by (created_at, id)), so an export of a year
    holds neither its rows in memory nor a connection for the whole download."""
    after: tuple[float, int] | None = None
    while True:
        query = (
            select(*LEDGER_EXPORT)
            .where(ledger.c.created_at >= start, ledger.c.created_at < end)
            .order_by(ledger.c.created_at, ledger.c.id)
            .limit(CSV_BATCH)
        )
        if after is not None:
            query = query.where(tuple_(ledger.c.created_at, ledger.c.id) > tuple_(*after))
        async with db.read() as conn:
            batch = (await conn.execute(query)).all()
        for row in batch:
            yield row
        if len(batch) < CSV_BATCH:
            return
        after = (batch[-1][1], batch[-1][0])
