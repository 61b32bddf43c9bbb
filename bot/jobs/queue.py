"""The job queue: reading jobs, claiming them under leases, and the state transitions.

Jobs are rows, so a fresh job, one another process queued and one a crash left behind
all go through the same claim. Leases make a job belong to one runner at a time; a
runner that dies stops renewing and another (or the same after a restart) takes the job
over once the lease expires.

The transitions that move money (succeed+charge, fail+refund) happen in one transaction
with the state change, guarded by the state they expect, so a repeated or concurrent
transition is a no-op rather than a second charge or refund. Creating a job (and
reserving its credits) is ``bot.jobs.reservations``' work, and every money row the bank's
(``bot.credits.bank``); this class is the one door to both.

The runner's small transitions (submit started, prediction id, provider switch,
delivering, succeed/fail, requeue) are group-committed (``WriteBatch``): those that
arrive while one transaction runs share the next, each caller still returning only
once its own write is committed, and a failed batch is re-run one write at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits import ledger
from bot.credits.bank import Bank
from bot.credits.limits import Limits
from bot.credits.policies import PolicyBook
from bot.domain import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    Job,
    JobState,
    UserRef,
)
from bot.jobs.reads import DELIVERED, WAITING_FOR, job_with_key, row_to_job, waiting_up_to
from bot.jobs.reservations import NewJob, Reservations, Reserved
from bot.storage.database import Database, completes_when_cancelled
from bot.storage.group_commit import WriteBatch
from bot.storage.schema import jobs

Clock = Callable[[], float]


async def _set_if_active(conn: AsyncConnection, job_id: str, **values: Any) -> bool:
    """Change a job that has not finished; a terminal job (another process finished or
    canceled it) is left as it is. True when the job was changed."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state.in_([s.value for s in ACTIVE_STATES]))
        .values(**values)
    )
    return bool(result.rowcount)


class JobQueue:
    """Every job query: created with its reservation (``create``), read, claimed,
    moved, and finished with its money settled (``finish``). Composed of the parts that
    do the work: ``reservations`` (creating), ``bank`` (every money row), ``writes``
    (the group-committed transitions); the service, the runner, the operator's
    endpoints and the tests hold this one object."""

    def __init__(
        self,
        db: Database,
        base_limits: Limits,
        clock: Clock,
        policy_book: PolicyBook | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        # The config's limits; what admins changed, and the overrides per scope, are in
        # ``policy_book`` (the claim reads the per-user concurrency cap in force there).
        self.base_limits = base_limits
        self.policy_book = policy_book or PolicyBook(base_limits)
        self.bank = Bank(db, clock, self.policy_book)
        self.reservations = Reservations(db, clock, self.policy_book, self.bank)
        # The transitions below go through here, group-committed.
        self.writes = WriteBatch(db)

    async def create(self, new: NewJob) -> Reserved:
        """Store the job with its cost reserved (``Reservations.create``)."""
        return await self.reservations.create(new)

    async def create_group(self, news: Sequence[NewJob]) -> list[Reserved]:
        """The variations of one request, reserved together (``Reservations.create_group``)."""
        return await self.reservations.create_group(news)

    # -- reads -------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        return row_to_job(row) if row else None

    async def by_idempotency_key(self, key: str) -> Job | None:
        async with self.db.read() as conn:
            return await job_with_key(conn, key)

    async def queue_position(self, job: Job) -> int:
        """1 for the next job to run; 0 when the job is no longer waiting."""
        if job.state != JobState.QUEUED:
            return 0
        async with self.db.read() as conn:
            return await waiting_up_to(conn, job.created_at)

    async def balance(self, user: UserRef) -> int:
        async with self.db.read() as conn:
            return await ledger.balance(conn, user)

    async def counts_by_state(self) -> dict[str, int]:
        async with self.db.read() as conn:
            rows = await conn.execute(select(jobs.c.state, func.count()).group_by(jobs.c.state))
            counts = {state.value: 0 for state in JobState}
            counts.update({state: count for state, count in rows})
        return counts

    async def active_for_user(self, user: UserRef) -> int:
        async with self.db.read() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(jobs)
                .where(
                    jobs.c.user_ref == str(user),
                    jobs.c.state.in_([s.value for s in ACTIVE_STATES]),
                )
            )
        return int(count or 0)

    async def recent_for_user(self, user: UserRef, limit: int = 10) -> list[Job]:
        """The user's newest jobs first (``/kontext history``): one query on the
        (user_ref, created_at) index."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(jobs)
                .where(jobs.c.user_ref == str(user))
                .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
                .limit(limit)
            )
            return [row_to_job(row) for row in rows]

    # -- the runner's transitions ------------------------------------------------------

    @completes_when_cancelled
    async def forget_delivery(self, job_id: str) -> None:
        """The posted result was deleted on the platform (its Delete button): history
        stops linking to it and offers no buttons for it. The output metadata keeps the
        rest; nothing else of the job changes."""
        async with self.db.transaction() as conn:
            row = (await conn.execute(select(jobs.c.result).where(jobs.c.id == job_id))).first()
            if row is None or not (row.result or {}).get(DELIVERED):
                return
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(result={**row.result, DELIVERED: None}, updated_at=self.clock())
            )

    # -- the runner's side ----------------------------------------------------------

    @completes_when_cancelled
    async def claim(
        self,
        owner: str,
        platforms: Collection[str],
        limit: int,
        lease_seconds: float,
    ) -> list[Job]:
        """Take up to ``limit`` runnable jobs: queued ones, and active ones whose lease
        expired (their runner died). Each is taken with a compare-and-set on its state
        and lease, so two runners never take the same job. A user's jobs beyond the
        per-user cap in force (config, or what an admin stored) wait in the queue."""
        if limit <= 0 or not platforms:
            return []
        now = self.clock()
        live_lease = and_(jobs.c.lease_owner.is_not(None), jobs.c.lease_expires_at >= now)
        claimable = and_(
            jobs.c.platform.in_(list(platforms)),
            or_(
                and_(
                    jobs.c.state == JobState.QUEUED.value,
                    or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now),
                ),
                and_(
                    jobs.c.state.in_([JobState.RUNNING.value, JobState.DELIVERING.value]),
                    ~live_lease,
                    # A variation waiting for its siblings is taken up by the one that
                    # posts the group (``group_turn``), never claimed on its own.
                    or_(jobs.c.group_state.is_(None), jobs.c.group_state != GROUP_WAITING),
                ),
            ),
        )
        claimed: list[Job] = []
        async with self.db.transaction() as conn:
            per_user = (await self.policy_book.for_everyone(conn)).per_user_concurrent
            busy = await conn.execute(
                select(jobs.c.user_ref, func.count())
                .where(
                    jobs.c.state.in_([JobState.RUNNING.value, JobState.DELIVERING.value]),
                    live_lease,
                )
                .group_by(jobs.c.user_ref)
            )
            running: dict[str, int] = {user: count for user, count in busy}
            candidates = (
                await conn.execute(
                    select(jobs)
                    .where(claimable)
                    .order_by(jobs.c.created_at)
                    .limit(limit * 4)
                    # PostgreSQL: rows another runner is claiming are skipped, not waited
                    # for (SQLite serialises writers and ignores this).
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in candidates:
                if len(claimed) >= limit:
                    break
                if running.get(row.user_ref, 0) >= per_user:
                    continue
                new_state = (
                    JobState.RUNNING.value if row.state == JobState.QUEUED.value else row.state
                )
                result = await conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == row.id,
                        jobs.c.state == row.state,
                        or_(jobs.c.lease_owner.is_(None), jobs.c.lease_expires_at < now),
                    )
                    .values(
                        state=new_state,
                        lease_owner=owner,
                        lease_expires_at=now + lease_seconds,
                        started_at=func.coalesce(jobs.c.started_at, now),
                        updated_at=now,
                    )
                )
                if result.rowcount != 1:
                    continue
                running[row.user_ref] = running.get(row.user_ref, 0) + 1
                # The row as read plus what was just written (a ``Job`` holds no lease
                # fields): no second read of it.
                claimed.append(replace(row_to_job(row), state=JobState(new_state)))
        return claimed

    @completes_when_cancelled
    async def renew_leases(self, owner: str, lease_seconds: float) -> int:
        now = self.clock()
        async with self.db.transaction() as conn:
            result = await conn.execute(
                update(jobs).where(*_leased_by(owner)).values(lease_expires_at=now + lease_seconds)
            )
        return int(result.rowcount)

    @completes_when_cancelled
    async def release_leases(self, owner: str) -> None:
        """Hand unfinished jobs back at once on a clean stop, so the next start resumes
        them without waiting for the lease to expire."""
        async with self.db.transaction() as conn:
            await conn.execute(
                update(jobs)
                .where(*_leased_by(owner))
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def _update_active(self, job_id: str, **values: Any) -> None:
        values["updated_at"] = self.clock()

        async def update_active(conn: AsyncConnection) -> None:
            await _set_if_active(conn, job_id, **values)

        await self.writes.run(update_active)

    async def requeue(self, job_id: str, delay: float) -> bool:
        """Put a job whose create the provider refused (429) back in line for later.

        Only a job with no prediction can go back: its create certainly did not happen,
        so taking it again later cannot run it twice.
        """
        now = self.clock()

        async def requeue(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.state == JobState.RUNNING.value,
                    jobs.c.prediction_id.is_(None),
                )
                .values(
                    state=JobState.QUEUED.value,
                    submit_started_at=None,
                    lease_owner=None,
                    lease_expires_at=None,
                    not_before=now + delay,
                    updated_at=now,
                )
            )
            return bool(result.rowcount)

        return await self.writes.run(requeue)

    async def mark_waiting(self, job: Job, platform: str | None) -> None:
        """A delivering job's result is held back by the platform's rate limit (or no
        longer is, ``None``): kept beside the output metadata, where the dashboard shows
        it; ``mark_succeeded`` writes the metadata anew without it."""
        meta = {**job.output_meta, WAITING_FOR: platform} if platform else dict(job.output_meta)
        await self._update_active(job.id, result=meta)

    async def switch_provider(self, job_id: str, provider: str, model: str) -> None:
        """Failover: the job goes to the next provider (its cost to the user stays)."""
        await self._update_active(job_id, provider=provider, model=model)

    async def clear_submit_started(self, job_id: str) -> None:
        """The provider refused the create outright: nothing can exist there."""
        await self._update_active(job_id, submit_started_at=None)

    async def mark_submit_started(self, job_id: str) -> None:
        await self._update_active(job_id, submit_started_at=self.clock())

    async def record_prediction(self, job_id: str, prediction_id: str) -> None:
        await self._update_active(job_id, prediction_id=prediction_id)

    async def mark_delivering(
        self, job_id: str, output_path: str, output_meta: Mapping[str, Any], *, user: UserRef
    ) -> int | None:
        """Record the downloaded output and its metadata; returns the user's balance,
        read in the same transaction (the credits left to show with the image), or None
        when the job had already finished elsewhere and was left as it was."""
        now = self.clock()

        async def mark_delivering(conn: AsyncConnection) -> int | None:
            changed = await _set_if_active(
                conn,
                job_id,
                updated_at=now,
                state=JobState.DELIVERING.value,
                output_path=output_path,
                result=dict(output_meta),  # the column of Job.output_meta
            )
            return await ledger.balance(conn, user) if changed else None

        return await self.writes.run(mark_delivering)

    async def finish(self, job: Job, outcome: Outcome) -> bool:
        """Move a job to its terminal state and settle its credits, in one transaction:
        a ``Charged`` job succeeded (the reservation becomes the charge), a ``Refunded``
        one failed or was canceled (the reservation comes back). The state guard makes a
        second attempt (any process, any outcome) a no-op: False, nothing settled twice."""
        return await self.writes.run(self._finisher(job, outcome, self.clock()))

    async def finish_many(self, settled: Sequence[tuple[Job, Outcome]]) -> list[bool]:
        """``finish`` for the members of a group posted together, in one transaction:
        after a crash either every one is settled or none is (and the group's poster,
        still unfinished, posts again and settles them)."""
        now = self.clock()
        finishers = [
            self._finisher(job, outcome, now, group_state=GROUP_POSTED) for job, outcome in settled
        ]

        async def finish_all(conn: AsyncConnection) -> list[bool]:
            return [await finish(conn) for finish in finishers]

        return await self.writes.run(finish_all)

    # -- variations (``--n``, issue 27): who posts a group, once --------------------------

    @completes_when_cancelled
    async def group_turn(self, job: Job, owner: str, lease_seconds: float) -> GroupTurn:
        """A member of a group has finished (its image downloaded, or failed): decide,
        under the lock of every member's row, whether the group is posted now and by
        whom. Posted once all its members have finished, by exactly one runner: the
        rows are locked in one order (PostgreSQL: each waits for the other's decision,
        and reads it after; SQLite holds the whole database), and a member is made the
        poster only where none is. A member finished before its siblings waits
        ("waiting": not claimed again, its output kept); the poster is a member with an
        image, whose lease this runner takes, so that a crash while posting is resumed
        by whoever claims it next, and the post is looked for before it is made again."""
        now = self.clock()
        async with self.db.transaction() as conn:
            rows = (
                await conn.execute(
                    select(jobs)
                    .where(jobs.c.group_id == job.group_id)
                    .order_by(jobs.c.id)
                    .with_for_update()
                )
            ).all()
            members = tuple(sorted((row_to_job(r) for r in rows), key=lambda m: m.group_index))
            me = next((m for m in members if m.id == job.id), job)

            async def wait() -> GroupTurn:
                if me.state == JobState.DELIVERING:
                    await conn.execute(
                        update(jobs)
                        .where(jobs.c.id == me.id)
                        .values(
                            group_state=GROUP_WAITING,
                            lease_owner=None,
                            lease_expires_at=None,
                            updated_at=now,
                        )
                    )
                return GroupTurn(False, None, members)

            if any(m.group_state == GROUP_POSTED for m in members):
                return GroupTurn(False, None, members)
            if any(not m.state.terminal and m.state != JobState.DELIVERING for m in members):
                return await wait()
            posting = next((m for m in members if m.group_state == GROUP_POSTING), None)
            if posting is not None:
                if posting.id == me.id:  # a restart of the poster: its post may exist
                    return GroupTurn(True, me, members, resumed=True)
                return await wait()
            delivering = [m for m in members if m.state == JobState.DELIVERING]
            if not delivering:
                # Every member failed or was canceled (and refunded): one message says so.
                await conn.execute(
                    update(jobs).where(jobs.c.id == me.id).values(group_state=GROUP_POSTED)
                )
                return GroupTurn(True, None, members)
            poster = me if me.state == JobState.DELIVERING else delivering[0]
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == poster.id)
                .values(
                    group_state=GROUP_POSTING,
                    lease_owner=owner,
                    lease_expires_at=now + lease_seconds,
                    updated_at=now,
                )
            )
            return GroupTurn(True, replace(poster, group_state=GROUP_POSTING), members)

    def _finisher(self, job: Job, outcome: Outcome, now: float, **extra: Any) -> Finish:
        """The guarded terminal transition of ``finish``, its money through the bank."""
        if isinstance(outcome, Charged):
            return _finisher(job, outcome, now, self._charge(job), **extra)
        return _finisher(job, outcome, now, self._refund(job, outcome.error_kind), **extra)

    def _charge(self, job: Job) -> Settle:
        async def charge(conn: AsyncConnection, now: float) -> None:
            await self.bank.charge(conn, job, now)

        return charge

    def _refund(self, job: Job, reason: str) -> Settle:
        async def refund(conn: AsyncConnection, now: float) -> None:
            await self.bank.refund(conn, job, reason, now)

        return refund

    # The pipeline's names for the two outcomes (its delivery code calls these).

    async def mark_succeeded(self, job: Job, delivered: Mapping[str, Any] | None = None) -> bool:
        return await self.finish(job, Charged(delivered))

    async def mark_failed(self, job: Job, *, error_kind: str, message: str) -> bool:
        return await self.finish(job, Refunded(error_kind, message))


@dataclass(frozen=True)
class Charged:
    """A job delivered: its reservation is settled as the charge. ``delivered``: where
    the result was posted, for history's link and buttons."""

    delivered: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Refunded:
    """A job that failed (or was canceled, ``state``): its reservation is refunded."""

    error_kind: str
    message: str
    state: JobState = JobState.FAILED


Outcome = Charged | Refunded

# ``jobs.group_state`` (migration 0010): a variation's place in its group's delivery.
GROUP_WAITING = "waiting"
GROUP_POSTING = "posting"
GROUP_POSTED = "posted"


@dataclass(frozen=True)
class GroupTurn:
    """``group_turn``'s decision. ``post``: this runner posts the group now, as
    ``poster`` (a member with an image, its lease now this runner's; None when every
    member failed); ``resumed``: the poster was posting already (a restart), so the post
    may exist. ``members``: the group as read under the lock, in order."""

    post: bool
    poster: Job | None
    members: tuple[Job, ...]
    resumed: bool = False


def _finisher(job: Job, outcome: Outcome, now: float, settle: Settle, **extra: Any) -> Finish:
    """The guarded terminal transition of ``finish``, for the caller's transaction;
    ``settle`` moves the job's money (the bank's charge or refund)."""
    if isinstance(outcome, Charged):
        state = JobState.SUCCEEDED
        values: dict[str, Any] = dict(extra)
        if outcome.delivered:
            # Where the platform says the result is now (its ``Reply.deliver``
            # answer), kept with the output metadata so that history can link to it.
            values["result"] = {**job.output_meta, DELIVERED: dict(outcome.delivered)}
    else:
        state = outcome.state
        values = {
            "error_kind": outcome.error_kind,
            "error_message": outcome.message[:2000],
            **extra,
        }

    async def finish(conn: AsyncConnection) -> bool:
        moved = await conn.execute(
            update(jobs)
            .where(
                jobs.c.id == job.id,
                jobs.c.state.not_in([s.value for s in TERMINAL_STATES]),
            )
            .values(
                state=state.value,
                finished_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
                **values,
            )
        )
        if moved.rowcount != 1:
            return False
        await settle(conn, now)
        return True

    return finish


Settle = Callable[[AsyncConnection, float], Awaitable[None]]
Finish = Callable[[AsyncConnection], Awaitable[bool]]


def _leased_by(owner: str) -> tuple[ColumnElement[bool], ...]:
    """The unfinished jobs a process holds: whose leases it renews, and hands back."""
    return (jobs.c.lease_owner == owner, jobs.c.state.in_([s.value for s in ACTIVE_STATES]))
