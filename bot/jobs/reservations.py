"""Creating a job and reserving its credits, and every refusal a user can get for it.

A job exists only with its cost reserved: the row and the ledger's reserve entry go in
one transaction, after the user's account is locked, the limits in force resolved, the
period's allowance granted and the operator's limits checked. A redelivered event (same
idempotency key) creates nothing and is answered with the job it already made.

Group commit: one reservation alone is 6 statements, and on this stack each
statement's round trip costs far more CPU than the database's work (see
docs/benchmarks.md, ledger). So while one transaction runs, the requests that arrive
queue up, and the next transaction takes them all with set-based statements
(``reserve_batch``): one that creates and locks the accounts, one read of the policies
that apply, one of the balances together with the allowances already granted, one
insert of the jobs and one of the ledger entries, whatever the number of requests. A
request alone is a batch of one (``Reservations._create``), so both paths decide by the
same code. What the set-based statements do not handle (the operator's cooldown or
shared budget, which need per-request reads under a lock, and a user twice in one batch)
goes one request at a time through ``_create_with_limits``, as does any batch that fails
(another process inserting the same idempotency key); tests/test_reservation_paths.py
checks that one at a time and together give the same answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bot import i18n
from bot.credits import ledger
from bot.credits.bank import Bank
from bot.credits.ledger import allowance_grant, allowance_key
from bot.credits.limits import Limits
from bot.credits.periods import Period, next_period_start, period_start
from bot.credits.policies import PolicyBook
from bot.credits.scopes import GLOBAL, scopes_for
from bot.domain import AttachmentSource, EditOptions, Job, JobState, RequestContext, UserRef
from bot.errors import QuotaError
from bot.i18n import _, ngettext
from bot.jobs import reads as job_reads
from bot.jobs.reads import count_waiting_up_to, job_with_key, row_to_job, waiting_up_to
from bot.storage.database import Database, completes_when_cancelled
from bot.storage.dialect import create_and_lock, one_of
from bot.storage.group_commit import GroupCommit, one_by_one
from bot.storage.schema import accounts, jobs
from bot.storage.schema import ledger as ledger_table

# The row that reservations lock while the operator's shared budget is counted.
BUDGET_ACCOUNT = UserRef("kontext", "budget", "all")


@dataclass(frozen=True)
class NewJob:
    idempotency_key: str
    user: UserRef
    prompt: str
    options: EditOptions
    attachments: tuple[AttachmentSource, ...]
    reply_target: Mapping[str, Any]
    cost: int
    provider: str
    model: str
    context: RequestContext = field(default_factory=RequestContext)
    # The named model (bot.credits.models) whose ``cost`` this is; None: no named models.
    model_name: str | None = None
    # The language the request is answered in (bot.i18n), kept for its result.
    locale: str | None = None
    # Variations (``--n``): the group this job is number ``group_index`` of.
    group_id: str | None = None
    group_index: int = 1
    group_size: int = 1


@dataclass(frozen=True)
class Reserved:
    """A job stored with its cost reserved, or the one a redelivered event already made
    (``duplicate``), and the user's balance after the reservation."""

    job: Job
    duplicate: bool
    balance_after: int
    # Jobs waiting up to this one when it was stored (1: it runs next), counted in the
    # reserving transaction; None when not counted there (a redelivered event).
    queue_position: int | None = None


class NotBatchable(Exception):
    """This batch needs the one-at-a-time path."""


# -- refusals -----------------------------------------------------------------------


def quota_message(balance: int, cost: int, refill: str | None) -> str:
    when = " " + _("Your allowance refills {when}.").format(when=refill) if refill else ""
    return (
        ngettext(
            "You have {balance} credit and an image costs {cost}.",
            "You have {balance} credits and an image costs {cost}.",
            balance,
        ).format(balance=balance, cost=cost)
        + when
        + " "
        + _("Ask an admin for a grant if you need more now.")
    )


def group_quota_message(balance: int, total: int, count: int, refill: str | None) -> str:
    """Too few credits for every variation asked: none started, nothing charged."""
    when = " " + _("Your allowance refills {when}.").format(when=refill) if refill else ""
    return (
        ngettext(
            "You have {balance} credit and {count} variations cost {total} together, so "
            "none was started and nothing was charged.",
            "You have {balance} credits and {count} variations cost {total} together, so "
            "none was started and nothing was charged.",
            balance,
        ).format(balance=balance, count=count, total=total)
        + " "
        + _("Ask for fewer (--n) or wait.")
        + when
    )


def balance_refusal(available: int, cost: int, now: float, period: Period) -> QuotaError:
    """Too few credits for this image, with when the allowance refills."""
    refill = next_period_start(period, now)
    refill_text = refill.strftime("%Y-%m-%d %H:%M UTC") if refill else None
    return QuotaError(
        quota_message(available, cost, refill_text),
        balance=available,
        cost=cost,
        refill_at=refill_text,
    )


def group_balance_refusal(
    available: int, total: int, count: int, now: float, period: Period
) -> QuotaError:
    """Too few credits for every variation asked (``--n``): refused whole."""
    refill = next_period_start(period, now)
    refill_text = refill.strftime("%Y-%m-%d %H:%M UTC") if refill else None
    return QuotaError(
        group_quota_message(available, total, count, refill_text),
        balance=available,
        cost=total,
        refill_at=refill_text,
    )


def paused_refusal(cost: int) -> QuotaError:
    """The answer to a request in a paused scope."""
    return QuotaError(
        _("An admin has paused the bot here for now. Nothing was charged."),
        balance=0,
        cost=cost,
        refill_at=None,
    )


def cooldown_refusal(wait: float, cost: int) -> QuotaError:
    return QuotaError(
        _("Please wait {seconds} s before your next edit.").format(seconds=f"{wait:.0f}"),
        balance=0,
        cost=cost,
        refill_at=None,
    )


def budget_refusal(cost: int, now: float, period: Period) -> QuotaError:
    refill = next_period_start(period, now)
    if refill:
        message = _(
            "The bot's shared budget for this period is used up. It renews {when}. "
            "Nothing was charged."
        ).format(when=i18n.when(refill))
    else:
        message = _("The bot's shared budget for this period is used up. Nothing was charged.")
    return QuotaError(
        message,
        balance=0,
        cost=cost,
        refill_at=f"{refill:%Y-%m-%d %H:%M} UTC" if refill else None,
    )


# -- rows -----------------------------------------------------------------------------


def new_job_id() -> str:
    return uuid.uuid4().hex


def queued_job(new: NewJob, job_id: str, now: float) -> Job:
    """The job as it is stored, without reading it back."""
    return Job(
        id=job_id,
        idempotency_key=new.idempotency_key,
        user=new.user,
        state=JobState.QUEUED,
        prompt=new.prompt,
        options=new.options,
        attachments=tuple(new.attachments),
        reply_target=dict(new.reply_target),
        cost=new.cost,
        provider=new.provider,
        model=new.model,
        created_at=now,
        model_name=new.model_name,
        locale=new.locale,
        group_id=new.group_id,
        group_index=new.group_index,
        group_size=new.group_size,
    )


def job_row(job: Job, now: float) -> dict[str, object]:
    """The ``jobs`` row of a job being created (both paths insert this)."""
    return {
        "id": job.id,
        "idempotency_key": job.idempotency_key,
        "user_ref": str(job.user),
        "platform": job.user.platform,
        "state": JobState.QUEUED.value,
        "prompt": job.prompt,
        "options": job.options.to_json(),
        "attachments": [a.to_json() for a in job.attachments],
        "reply_target": dict(job.reply_target),
        "cost": job.cost,
        "provider": job.provider,
        "model": job.model,
        "model_name": job.model_name,
        "locale": job.locale,
        "group_id": job.group_id,
        "group_index": job.group_index if job.group_id else None,
        "group_size": job.group_size if job.group_id else None,
        "created_at": now,
        "updated_at": now,
    }


# -- creating -------------------------------------------------------------------------


class Reservations:
    """Adds jobs to the database with their credits reserved (through ``bank``)."""

    def __init__(
        self, db: Database, clock: Callable[[], float], policy_book: PolicyBook, bank: Bank
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy_book = policy_book
        self.bank = bank
        self._group = GroupCommit[NewJob, Reserved](self._create_many)

    async def create(self, new: NewJob) -> Reserved:
        """Store the job and reserve its cost in one transaction, or return the job that
        already has this idempotency key (a redelivered event creates nothing)."""
        try:
            return await self._group.submit(new)
        except IntegrityError:
            # Another task stored the same key between our look-up and insert.
            async with self.db.read() as conn:
                existing = await job_with_key(conn, new.idempotency_key)
                if existing is None:
                    raise
                return await redelivered(conn, existing)

    async def _create_many(self, batch: list[NewJob]) -> list[Reserved | BaseException]:
        """One transaction for everything that arrived together, or one at a time where
        that path does not apply."""
        if len(batch) > 1:
            try:
                return await self._create_batch(batch)
            except (NotBatchable, IntegrityError):
                pass
        return await one_by_one(batch, self._create)

    @completes_when_cancelled
    async def _create_batch(self, batch: list[NewJob]) -> list[Reserved | BaseException]:
        now = self.clock()
        keys = [new.idempotency_key for new in batch]
        async with self.db.transaction() as conn:
            # Redelivered events: answered with the job they already made.
            rows = await conn.execute(
                select(jobs).where(one_of(conn, jobs.c.idempotency_key, keys))
            )
            existing = {row.idempotency_key: row_to_job(row) for row in rows}
            fresh = [new for new in batch if new.idempotency_key not in existing]
            items = [(queued_job(new, new_job_id(), now), new.context) for new in fresh]
            reserved = iter(await reserve_batch(conn, items, self.policy_book, self.bank, now))
            outcomes: list[Reserved | BaseException] = []
            for new in batch:
                old = existing.get(new.idempotency_key)
                if old is not None:
                    outcomes.append(await redelivered(conn, old))
                else:
                    outcomes.append(next(reserved))
        return outcomes

    @completes_when_cancelled
    async def _create(self, new: NewJob) -> Reserved:
        now = self.clock()
        job = queued_job(new, new_job_id(), now)
        async with self.db.transaction() as conn:
            # A redelivered event gets its job, never a refusal (cooldown, balance) that
            # the first delivery's own reservation would now cause.
            same_key = jobs.c.idempotency_key == new.idempotency_key
            row = (await conn.execute(select(jobs).where(same_key))).first()
            if row is not None:
                return await redelivered(conn, row_to_job(row))
            # The batch's rules and statements, for a batch of one: one set of rules for
            # both paths, and a read of the balance with the allowance's key instead of
            # an insert-to-see and a sum, and the queue ahead read with the balances (6
            # statements; 8 before).
            try:
                (outcome,) = await reserve_batch(
                    conn, [(job, new.context)], self.policy_book, self.bank, now
                )
            except NotBatchable:
                return await self._create_with_limits(conn, new, job, now)
            if isinstance(outcome, QuotaError):
                raise outcome
            return outcome

    async def _create_with_limits(
        self, conn: AsyncConnection, new: NewJob, job: Job, now: float
    ) -> Reserved:
        """The path for the operator's cooldown and shared budget, which need reads under
        their locks that the set-based path does not make. The account is locked already
        (``reserve_batch`` locked it before it found the cooldown or budget)."""
        (reserved,) = await self._reserve_together(conn, [(new, job)], now)
        return reserved

    async def _reserve_together(
        self, conn: AsyncConnection, items: Sequence[tuple[NewJob, Job]], now: float
    ) -> list[Reserved]:
        """Reserve the jobs of one user whole or not at all, in the caller's transaction
        with the account locked: one job (the path above), or the variations of one
        request (``create_group``), whose limits and balance are checked against their
        total, so that a request that cannot have them all is refused whole."""
        new = items[0][0]
        total = sum(n.cost for n, _ in items)
        limits, paused = await self.policy_book.resolve(conn, new.user, new.context)
        if paused is not None:
            raise paused_refusal(total)
        await self._check_limits(conn, new, limits, now, total)
        await self.bank.grant_allowance(conn, new.user, limits, now)
        available = await ledger.balance(conn, new.user)
        if available < total:
            if len(items) > 1:
                raise group_balance_refusal(available, total, len(items), now, limits.period)
            raise balance_refusal(available, total, now, limits.period)
        if len(items) == 1:
            # One job: the single path's statements (tests/test_ledger.py counts them).
            await conn.execute(jobs.insert().values(**job_row(items[0][1], now)))
            await self.bank.reserve(conn, items[0][1], now)
        else:
            # A group: one insert of the jobs, one of their reservations (the bank's
            # batch path, as ``reserve_batch`` posts a batch's entries).
            await conn.execute(jobs.insert(), [job_row(job, now) for _, job in items])
            await self.bank.post_entries(
                conn, [ledger.reserve_entry(job.user, job.id, job.cost, now) for _, job in items]
            )
        left = available - total
        position = await waiting_up_to(conn, now)
        return [Reserved(job, False, left, position) for _, job in items]

    @completes_when_cancelled
    async def create_group(self, news: Sequence[NewJob]) -> list[Reserved]:
        """The variations of one request (``--n``): every job stored and reserved in one
        transaction, or none (a ``QuotaError`` naming the total). A redelivered event
        (the first job's idempotency key) creates nothing and gets the group it made."""
        now = self.clock()
        first = news[0]
        async with self.db.transaction() as conn:
            same_key = jobs.c.idempotency_key == first.idempotency_key
            row = (await conn.execute(select(jobs).where(same_key))).first()
            if row is not None:
                old = row_to_job(row)
                members = [old]
                if old.group_id is not None:
                    rows = await conn.execute(
                        select(jobs)
                        .where(jobs.c.group_id == old.group_id)
                        .order_by(jobs.c.group_index)
                    )
                    members = [row_to_job(r) for r in rows]
                balance = await ledger.balance(conn, old.user)
                return [Reserved(job, True, balance) for job in members]
            await ledger.lock_account(conn, first.user, now)
            items = [(new, queued_job(new, new_job_id(), now)) for new in news]
            return await self._reserve_together(conn, items, now)

    async def _check_limits(
        self, conn: AsyncConnection, new: NewJob, limits: Limits, now: float, total: int
    ) -> None:
        """The operator's limits beyond the balance: cooldown and the shared budget
        (``total``: what the request reserves, its variations together)."""
        if limits.cooldown_seconds > 0:
            last = await conn.scalar(
                select(func.max(jobs.c.created_at)).where(jobs.c.user_ref == str(new.user))
            )
            wait = (last or 0.0) + limits.cooldown_seconds - now
            if last is not None and wait > 0:
                raise cooldown_refusal(wait, total)
        if limits.budget > 0:
            # Serialise every reservation on one row while the budget is counted, so
            # that processes cannot overspend it together.
            await ledger.lock_account(conn, BUDGET_ACCOUNT, now)
            period = self.policy_book.budget_period_of(limits)  # credits.budget_period
            spent = await ledger.spent_since(conn, period_start(period, now))
            if spent + total > limits.budget:
                raise budget_refusal(total, now, period)


async def redelivered(conn: AsyncConnection, job: Job) -> Reserved:
    """The answer to a request whose idempotency key already made ``job``: that job, and
    its user's balance now; nothing is reserved again."""
    return Reserved(job, True, await ledger.balance(conn, job.user))


async def balances_and_queue(
    conn: AsyncConnection, users: list[str], allowance_keys: list[str], now: float
) -> tuple[dict[str, int], set[str], int]:
    """Each user's balance, the users whose allowance for this period (``allowance_keys``)
    is granted already, and the queued jobs created up to ``now`` (capped as
    ``waiting_up_to`` caps it), in one statement: the count is a one-row derived table the
    ledger is joined to, so a user with no entries yet still gets the count (one row with
    no user). It was a statement of its own after the insert (7 per reservation, now 6).
    """
    waiting = count_waiting_up_to(now).subquery()
    rows = await conn.execute(
        select(
            waiting.c.ahead,
            ledger_table.c.user_ref,
            func.sum(ledger_table.c.amount),
            func.max(case((one_of(conn, ledger_table.c.dedupe_key, allowance_keys), 1), else_=0)),
        )
        .select_from(waiting.outerjoin(ledger_table, one_of(conn, ledger_table.c.user_ref, users)))
        .group_by(waiting.c.ahead, ledger_table.c.user_ref)
    )
    balances: dict[str, int] = {}
    granted: set[str] = set()
    ahead = 0
    for count, ref, total, has_grant in rows:
        ahead = int(count or 0)
        if ref is None:
            continue
        balances[str(ref)] = int(total or 0)
        if has_grant:
            granted.add(str(ref))
    return balances, granted, ahead


async def reserve_batch(
    conn: AsyncConnection,
    items: Sequence[tuple[Job, RequestContext]],
    policy_book: PolicyBook,
    bank: Bank,
    now: float,
) -> list[Reserved | QuotaError]:
    """Reserve every item's job in the caller's transaction; items are jobs not yet
    stored (ids assigned), each with a distinct user."""
    if not items:
        return []
    users = [str(job.user) for job, _ in items]
    if len(set(users)) != len(users):
        raise NotBatchable("a user twice in one batch")
    await create_and_lock(
        conn, accounts, [{"user_ref": u, "created_at": now} for u in users], "user_ref"
    )
    scopes = {GLOBAL}
    for job, context in items:
        scopes.update(scopes_for(job.user, context))
    found = await policy_book.overrides(conn, sorted(scopes))
    decided = [policy_book.decide(found, job.user, context) for job, context in items]
    if any(p.cooldown_seconds > 0 or p.budget > 0 for p, _ in decided):
        raise NotBatchable("cooldown or budget")

    # Balances, whether this period's allowance was granted and the queue ahead, in one
    # read (``balances_and_queue``).
    keys = [
        key
        for (job, _files), (limits, paused) in zip(items, decided, strict=True)
        if paused is None and (key := allowance_key(job.user, limits, now)) is not None
    ]
    balances, granted, ahead = await balances_and_queue(conn, users, keys, now)
    # The allowances due count towards the balance; a grant is written only with the
    # reservation it made possible, as on the single path, whose refusal rolls its
    # grant back (the next request grants it again, under the same key).
    grants: dict[str, dict[str, Any]] = {}
    for (job, _files), (limits, paused) in zip(items, decided, strict=True):
        ref = str(job.user)
        if paused is not None or ref in granted:
            continue
        grant = allowance_grant(job.user, limits, now, balances.get(ref, 0))
        if grant is not None:
            grants[ref] = grant
            balances[ref] = balances.get(ref, 0) + int(grant["amount"])
    # Entries go in as one statement: each accepted request's grant, then its reservation.
    entries: list[dict[str, Any]] = []

    outcomes: list[Reserved | QuotaError] = []
    job_rows: list[dict[str, object]] = []
    for (job, _files), (limits, paused) in zip(items, decided, strict=True):
        available = balances.get(str(job.user), 0)
        if paused is not None:
            outcomes.append(paused_refusal(job.cost))
            continue
        if available < job.cost:
            outcomes.append(balance_refusal(available, job.cost, now, limits.period))
            continue
        job_rows.append(job_row(job, now))
        if (grant := grants.get(str(job.user))) is not None:
            entries.append(grant)
        entries.append(ledger.reserve_entry(job.user, job.id, job.cost, now))
        outcomes.append(Reserved(job, False, available - job.cost))
    if job_rows:
        await conn.execute(jobs.insert(), job_rows)
    await bank.post_entries(conn, entries)
    if not job_rows:
        return outcomes
    # One position for the whole batch: its jobs share one creation time, and they are
    # queued behind what was waiting when the balances were read (this transaction's
    # view: counting again after the insert would add exactly these jobs).
    position = min(ahead + len(job_rows), job_reads.QUEUE_POSITION_CAP)
    return [
        replace(outcome, queue_position=position) if isinstance(outcome, Reserved) else outcome
        for outcome in outcomes
    ]
