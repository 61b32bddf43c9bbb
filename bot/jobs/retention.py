"""Retention: images are kept no longer than configured, finished jobs are pruned.

The ledger is never pruned: it is the record of every credit movement and balances are
derived from it. A ledger entry may name a job that no longer exists; that is expected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from bot.domain import TERMINAL_STATES
from bot.jobstore import JobStore
from bot.storage.schema import jobs

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class PruneReport:
    images_deleted: int
    jobs_deleted: int


def _output_files(directory: Path) -> list[tuple[Path, float]]:
    if not directory.is_dir():
        return []
    return [(path, path.stat().st_mtime) for path in directory.iterdir() if path.is_file()]


def _unlink(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except OSError:
            continue
    return removed


async def prune(
    store: JobStore,
    output_dir: Path,
    *,
    keep_images_hours: float,
    keep_jobs_days: float,
) -> PruneReport:
    """Delete result images past their time (never one a job still needs) and finished
    jobs older than ``keep_jobs_days`` (0 keeps jobs forever)."""
    now = store.clock()
    terminal = [state.value for state in TERMINAL_STATES]
    files = await asyncio.to_thread(_output_files, output_dir)
    stale: list[Path] = []
    if files:
        async with store.db.transaction() as conn:
            active = {
                row.id
                for row in await conn.execute(
                    select(jobs.c.id).where(jobs.c.state.not_in(terminal))
                )
            }
        cutoff = now - keep_images_hours * HOUR
        for path, modified in files:
            job_id = path.name.split(".", 1)[0]
            if job_id in active or (path.name.endswith(".part") and modified > now - HOUR):
                continue
            if modified <= cutoff:
                stale.append(path)
    images_deleted = await asyncio.to_thread(_unlink, stale)
    jobs_deleted = 0
    if keep_jobs_days > 0:
        async with store.db.transaction() as conn:
            result = await conn.execute(
                delete(jobs).where(
                    jobs.c.state.in_(terminal),
                    jobs.c.finished_at < now - keep_jobs_days * DAY,
                )
            )
            jobs_deleted = int(result.rowcount)
    return PruneReport(images_deleted, jobs_deleted)
