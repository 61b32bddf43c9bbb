"""Several processes on one database: no overspend, no double charge, crash recovery.

PostgreSQL is the database for several bot processes; SQLite (one process, several
tasks) is covered by tests/test_ledger.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.credits.limits import Limits
from bot.domain import UserRef
from bot.jobs.queue import Charged
from bot.jobstore import JobStore
from bot.storage import open_database
from bot.storage.schema import ledger
from tests.fakes.coretoday import FakeCoreToday
from tests.pg import Cluster
from tests.support import (
    HANG_GUARD_SECONDS,
    balance,
    environment,
    kill_mid_job,
    ledger_kinds,
    migrated_database,
    start,
)

ROOT = Path(__file__).resolve().parent.parent
USERS = ["slack:T1:U1", "slack:T1:U2", "discord:9:3"]
PROCESSES, TASKS = 4, 64


@pytest.fixture
async def pg_url(pg_cluster: Cluster | str) -> str:
    return await migrated_database(pg_cluster)


async def test_four_processes_reserving_for_the_same_users(pg_url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.workers.reserve",
            pg_url,
            str(seed),
            str(TASKS),
            *USERS,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in range(PROCESSES)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(w.communicate() for w in workers)), HANG_GUARD_SECONDS
    )
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err.decode()[-2000:]
    stored = [line for out, _ in outputs for line in out.decode().split()]
    assert len(stored) == len(set(stored)) == 3 * 10  # 1200 / 120 credits for each user

    db = await open_database(pg_url, run_migrations=False)
    store = JobStore(db, Limits(1200, "daily"), lambda: 0.0)
    try:
        async with db.transaction() as conn:
            rows = (
                await conn.execute(
                    select(
                        ledger.c.user_ref, ledger.c.kind, func.count(), func.sum(ledger.c.amount)
                    ).group_by(ledger.c.user_ref, ledger.c.kind)
                )
            ).all()
        for user in USERS:
            kinds = {kind: (count, total) for ref, kind, count, total in rows if ref == user}
            assert kinds["grant"] == (1, 1200)
            assert kinds["reserve"] == (10, -1200)
            assert kinds["charge"][0] == 10  # each job charged once despite double settling
            assert await store.balance(UserRef.parse(user)) == 0
        # A further settle from yet another process changes nothing.
        for job_id in stored:
            job = await store.get(job_id)
            assert job is not None and await store.finish(job, Charged()) is False
    finally:
        await db.dispose()


async def test_a_killed_process_job_is_finished_by_another(
    tmp_path: Path, fake: FakeCoreToday, pg_url: str
) -> None:
    env = environment(
        tmp_path, fake, KONTEXT_STORAGE__URL=pg_url, KONTEXT_JOBS__LEASE_SECONDS="0.5"
    )
    out = tmp_path / "orphan.png"
    await kill_mid_job(tmp_path, fake, env, out)
    other = await start(["run"], env, tmp_path)
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not out.is_file():
                await asyncio.sleep(0.02)
    finally:
        other.send_signal(signal.SIGTERM)
        await asyncio.wait_for(other.communicate(), timeout=HANG_GUARD_SECONDS)
    assert other.returncode == 0
    assert len(fake.creates) == 1  # polled again at the provider, never resubmitted
    assert await ledger_kinds(env) == ["charge", "grant", "reserve"]
    assert await balance(tmp_path, fake, env) == 1080
