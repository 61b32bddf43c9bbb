"""How a job is read: its row turned into a ``Job``, a key's job, the queue ahead.

The functions the queue (``bot.jobs.queue``, which holds every job query) and the
reservations (``bot.jobs.reservations``) both read with, inside their own transactions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.domain import AttachmentSource, EditOptions, Job, JobState, UserRef
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
        locale=row.locale,
    )


async def job_with_key(conn: AsyncConnection, key: str) -> Job | None:
    """The job a request's idempotency key made, if any."""
    row = (await conn.execute(select(jobs).where(jobs.c.idempotency_key == key))).first()
    return row_to_job(row) if row else None


def count_waiting_up_to(created_at: float) -> Select[int]:
    """The count of ``waiting_up_to`` as a statement (the reservations read it inside
    their balances statement). Counted up to ``QUEUE_POSITION_CAP``: the count walks the
    queue's index, and a backlog of tens of thousands must not make every reservation
    pay for walking it all."""
    ahead = (
        # Only what the (state, created_at) index holds: no row is read, on either database.
        select(jobs.c.created_at)
        .where(jobs.c.state == JobState.QUEUED.value, jobs.c.created_at <= created_at)
        .limit(QUEUE_POSITION_CAP)
        .subquery()
    )
    return select(func.count().label("ahead")).select_from(ahead)


async def waiting_up_to(conn: AsyncConnection, created_at: float) -> int:
    """The queued jobs created at or before ``created_at``: a job's place in line."""
    return int(await conn.scalar(count_waiting_up_to(created_at)) or 0)
