"""Reading jobs: one job, a user's recent ones, counts, a queue position.

Part of the job store (``JobQueue`` extends it); the reads that the claim and the
transitions do inside their own transactions stay with them in ``bot.jobs.queue``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits import ledger
from bot.domain import ACTIVE_STATES, AttachmentSource, EditOptions, Job, JobState, UserRef
from bot.storage.database import Database
from bot.storage.schema import jobs

# A queue position is shown exactly up to here; beyond, as "1,000+" (bot.chat.texts).
QUEUE_POSITION_CAP = 1000

# The key of ``Job.output_meta`` (the jobs.result column) holding where the result was
# posted: what ``Reply.deliver`` answered (a platform's ids and a ``link``).
DELIVERED = "delivered"
# In a delivering job's output metadata: the platform whose rate limit holds it back.
WAITING_FOR = "waiting_for"


def row_to_job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        idempotency_key=row.idempotency_key,
        user=UserRef.parse(row.user_ref),
        state=JobState(row.state),
        prompt=row.prompt,
        options=EditOptions.from_json(row.options),
        attachments=tuple(AttachmentSource.from_json(a) for a in row.attachments),
        reply_target=row.reply_target,
        cost=row.cost,
        provider=row.provider,
        model=row.model,
        prediction_id=row.prediction_id,
        submit_started=row.submit_started_at is not None,
        output_path=row.output_path,
        error_kind=row.error_kind,
        error_message=row.error_message,
        created_at=row.created_at,
        finished_at=row.finished_at,
        output_meta=row.result or {},
        model_name=row.model_name,
        cancel_requested=row.cancel_requested_at is not None,
        group_id=row.group_id,
        group_index=row.group_index or 1,
        group_size=row.group_size or 1,
        group_state=row.group_state,
    )


class JobReads:
    db: Database

    async def get(self, job_id: str) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        return row_to_job(row) if row else None

    async def by_idempotency_key(self, key: str) -> Job | None:
        async with self.db.read() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.idempotency_key == key))).first()
        return row_to_job(row) if row else None

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


async def waiting_up_to(conn: AsyncConnection, created_at: float) -> int:
    """The queued jobs created at or before ``created_at``: a new job's place in line
    (the reservations count it in the transaction that stores the job). Counted up to
    ``QUEUE_POSITION_CAP``: the count walks the queue's index, and a backlog of tens of
    thousands must not make every reservation pay for walking it all."""
    ahead = (
        # Only what the (state, created_at) index holds: no row is read, on either database.
        select(jobs.c.created_at)
        .where(jobs.c.state == JobState.QUEUED.value, jobs.c.created_at <= created_at)
        .limit(QUEUE_POSITION_CAP)
        .subquery()
    )
    return int(await conn.scalar(select(func.count()).select_from(ahead)) or 0)
