"""A separate process that reserves credits as a bot process would (for the concurrency
test): ``python -m tests.workers.reserve URL SEED TASKS USERS...``; prints the ids of
the jobs it stored, one per line, then settles each of them twice concurrently."""

from __future__ import annotations

import asyncio
import random
import sys
import time

from bot.credits.limits import Limits
from bot.domain import EditOptions, UserRef
from bot.errors import QuotaError
from bot.jobs.queue import Charged
from bot.jobs.reservations import NewJob
from bot.jobstore import JobStore
from bot.storage import open_database


async def main(url: str, seed: int, tasks: int, users: list[str]) -> None:
    db = await open_database(url, run_migrations=False)
    store = JobStore(db, Limits(1200, "daily"), time.time)
    rng = random.Random(seed)

    async def one(index: int) -> str | None:
        user = UserRef.parse(rng.choice(users))
        try:
            stored = await store.create(
                NewJob(f"p{seed}-{index}", user, "x", EditOptions(), (), {}, 120, "coretoday", "m")
            )
        except QuotaError:
            return None
        return stored.job.id

    ids = [job for job in await asyncio.gather(*(one(i) for i in range(tasks))) if job]
    stored_jobs = [await store.get(job_id) for job_id in ids]
    # Settle every job twice at once: a charge must still happen once.
    await asyncio.gather(
        *[store.finish(job, Charged()) for job in stored_jobs if job for _ in range(2)]
    )
    print("\n".join(ids), flush=True)
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
