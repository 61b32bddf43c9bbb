"""Cancel: the requester (or an admin) stops a job that has not finished.

A queued job is removed and refunded at once, in one transaction whose state guard
loses to a runner that claimed it in the meantime (the job then runs, and the cancel is
asked of it as of any running job). A running job gets ``cancel_requested_at`` stored:
whichever process runs it, also after a restart, reads that before the create (then
nothing is sent and it is refunded at once) or on its next look at the provider, asks
the provider to stop (core.today ``DELETE /v1/predictions/{id}``,
Replicate ``POST /v1/predictions/{id}/cancel``, ComfyUI's queue delete or interrupt),
and refunds only once the provider says the prediction ended canceled. A result that
comes first wins: it is delivered and charged, and the requester is told. BFL documents
no cancel route, so a job there is not asked to stop: the asker is told it goes on.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.credits import ledger
from bot.domain import ACTIVE_STATES, Job, JobState, UserRef
from bot.errors import ErrorKind
from bot.jobs.queue import JobQueue
from bot.jobs.reads import row_to_job
from bot.storage.schema import jobs

# Providers without a cancel route: BFL's API reference lists create, get_result and
# credits only ("BFL documents no way to cancel a task", bot/providers/bfl.py).
CANNOT_CANCEL = frozenset({"bfl"})
CANCELED_KIND = ErrorKind.CANCELED.value  # the asker's own decision, refunded


async def newest_unfinished(queue: JobQueue, user: UserRef) -> Job | None:
    """The asker's newest job that has not finished (``/kontext cancel``)."""
    async with queue.db.read() as conn:
        row = (
            await conn.execute(
                select(jobs)
                .where(
                    jobs.c.user_ref == str(user),
                    jobs.c.state.in_([s.value for s in ACTIVE_STATES]),
                )
                .order_by(jobs.c.created_at.desc())
                .limit(1)
            )
        ).first()
    return row_to_job(row) if row else None


async def cancel_queued(queue: JobQueue, job: Job, message: str) -> int | None:
    """Remove a job that still waits and refund it, in one transaction; None when it is
    no longer waiting (a runner took it, or it finished). Returns the balance."""
    now = queue.clock()

    async def cancel(conn: AsyncConnection) -> int | None:
        moved = await conn.execute(
            update(jobs)
            .where(jobs.c.id == job.id, jobs.c.state == JobState.QUEUED.value)
            .values(
                state=JobState.CANCELED.value,
                finished_at=now,
                updated_at=now,
                error_kind=CANCELED_KIND,
                error_message=message[:2000],
            )
        )
        if moved.rowcount != 1:
            return None
        await queue.bank.refund(conn, job, "canceled", now)
        return await ledger.balance(conn, job.user)

    return await queue.writes.run(cancel)


async def ask_to_cancel(queue: JobQueue, job_id: str) -> bool:
    """Record the request on a running job; False when it is no longer running or was
    asked already."""
    now = queue.clock()

    async def ask(conn: AsyncConnection) -> bool:
        result = await conn.execute(
            update(jobs)
            .where(
                jobs.c.id == job_id,
                jobs.c.state == JobState.RUNNING.value,
                jobs.c.cancel_requested_at.is_(None),
            )
            .values(cancel_requested_at=now, updated_at=now)
        )
        return bool(result.rowcount)

    return await queue.writes.run(ask)


async def cancel_requested(queue: JobQueue, job_id: str) -> bool:
    """Whether someone asked to cancel this job (the runner looks before each poll)."""
    async with queue.db.read() as conn:
        value = (
            await conn.execute(select(jobs.c.cancel_requested_at).where(jobs.c.id == job_id))
        ).scalar()
    return value is not None
