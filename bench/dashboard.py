"""The dashboard's pages on a year of data: 1M ledger entries, SQLite and PostgreSQL.

Each database is migrated to 0006 (before the dashboard's and history's indexes),
loaded in bulk with a year of synthetic history, and every page is timed through the
real dashboard (``bot.dashboard.DashboardServer`` over HTTP, httpx): first without the
indexes of migrations 0007 (dashboard) and 0008 (history), then after upgrading to the
head (index build time reported). A page's
figure is the median of ``REPEATS`` requests after one warm-up request (cold is the
first). PostgreSQL gets an ``ANALYZE`` after the load, as autovacuum would give it; SQLite
gets none (the bot never runs one).

The history: ``USERS`` users on three platforms, ``JOBS`` jobs spread over 365 days
(85% delivered, 10% refused or failed and refunded, 5% canceled and refunded), each a
``reserve`` and a ``charge`` or ``refund``, plus a daily allowance grant for each user on
each day they used the bot: together ``LEDGER_TARGET`` entries. The jobs table keeps the
whole year (as with ``keep_jobs_days = 365``), the worst case for the jobs queries.

``python -m bench --only dashboard`` (``--quick``: 100k entries).
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from alembic import command

from bench.common import db_url_for, postgres
from bot.config import Settings
from bot.dashboard import DashboardServer
from bot.storage.database import alembic_config

NOW = 1_764_000_000.0  # 2025-11-24 16:00 UTC
DAY = 86400
USERS = 2000
LEDGER_TARGET = 1_000_000
REPEATS = 5
PASSWORD = "bench"
PLATFORMS = ("discord", "slack", "console")
JOB_COLUMNS = (
    "id", "idempotency_key", "user_ref", "platform", "state", "prompt", "options",
    "attachments", "reply_target", "cost", "provider", "model", "error_kind",
    "error_message", "created_at", "updated_at", "finished_at",
)  # fmt: skip
LEDGER_COLUMNS = (
    "user_ref", "kind", "amount", "job_id", "dedupe_key", "actor", "note", "created_at",
)  # fmt: skip


def history(target: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(jobs, ledger entries) of a year, ``target`` entries in all, in time order."""
    rng = random.Random(2026)
    users = [
        f"{PLATFORMS[i % 3]}:{'W' + str(i % 7)}:U{i:05d}" for i in range(USERS)
    ]  # fmt: skip
    weights = [1.0 / (1 + i) ** 0.8 for i in range(USERS)]  # a few heavy users
    jobs_n = int(target / 2.5)  # 2 entries per job; grants fill the rest
    options = json.dumps({"seed": 7, "aspect_ratio": None})
    granted: set[tuple[str, int]] = set()
    job_rows: list[tuple[Any, ...]] = []
    ledger_rows: list[tuple[Any, ...]] = []
    start = NOW - 365 * DAY
    times = sorted(rng.uniform(start, NOW - 60) for _ in range(jobs_n))
    chosen = rng.choices(users, weights, k=jobs_n)
    for at, user in zip(times, chosen, strict=True):
        day = int(at // DAY)
        if (user, day) not in granted:
            granted.add((user, day))
            key = f"allowance:{user}:daily:{day}"
            ledger_rows.append((user, "grant", 1200, None, key, "allowance", "daily", at - 1))
        job_id = uuid.uuid4().hex
        roll = rng.random()
        state, kind = ("succeeded", None)
        if roll > 0.95:
            state = "canceled"
        elif roll > 0.85:
            state, kind = "failed", rng.choice(["moderation", "provider_unavailable", "internal"])
        job_rows.append(
            (job_id, f"bench:{job_id}", user, user.split(":")[0], state,
             f"make it a watercolor {job_id[:6]}", options, "[]", "{}", 120, "coretoday",
             "black-forest-labs/flux-kontext-pro", kind, kind and f"{kind} said no",
             at, at + 20, at + 20)
        )  # fmt: skip
        ledger_rows.append((user, "reserve", -120, job_id, f"reserve:{job_id}", None, None, at))
        if state == "succeeded":
            ledger_rows.append(
                (user, "charge", 0, job_id, f"charge:{job_id}", None, "120 credits charged",
                 at + 20)
            )  # fmt: skip
        else:
            ledger_rows.append(
                (user, "refund", 120, job_id, f"refund:{job_id}", None, kind or "canceled",
                 at + 20)
            )  # fmt: skip
    ledger_rows.sort(key=lambda row: row[-1])
    return job_rows, ledger_rows


async def load(url: str, job_rows: list[tuple[Any, ...]], entries: list[tuple[Any, ...]]) -> None:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]

        def bulk() -> None:
            conn = sqlite3.connect(path)
            with conn:
                marks = ", ".join("?" * len(JOB_COLUMNS))
                conn.executemany(
                    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({marks})", job_rows
                )
                marks = ", ".join("?" * len(LEDGER_COLUMNS))
                conn.executemany(
                    f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES ({marks})", entries
                )
            conn.close()

        await asyncio.to_thread(bulk)
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table("jobs", records=job_rows, columns=list(JOB_COLUMNS))
        await conn.copy_records_to_table("ledger", records=entries, columns=list(LEDGER_COLUMNS))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def analyze(url: str) -> None:
    """PostgreSQL's statistics after a bulk change, as autovacuum would take them."""
    if url.startswith("sqlite"):
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def time_pages(client: httpx.AsyncClient, heavy_user: str) -> dict[str, dict[str, float]]:
    month = {"from": "2025-10-01", "to": "2025-10-31"}
    pages = {
        "overview /": ("/", {}),
        "user /users/<heaviest>": (f"/users/{heavy_user}", {}),
        "jobs /jobs": ("/jobs", {}),
        "jobs ?state=failed&platform=discord": (
            "/jobs",
            {"state": "failed", "platform": "discord"},
        ),
        "jobs ?user=<heaviest>": ("/jobs", {"user": heavy_user}),
        "jobs ?user=<light>": ("/jobs", {"user": "slack:W1:U01999"}),
        "ledger.csv one month": ("/ledger.csv", month),
    }
    figures: dict[str, dict[str, float]] = {}
    for name, (path, params) in pages.items():
        samples = []
        size = 0
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            answer = await client.get(path, params=params)
            samples.append(time.perf_counter() - started)
            answer.raise_for_status()
            size = len(answer.content)
        figures[name] = {
            "cold_ms": round(samples[0] * 1000, 1),
            "median_ms": round(statistics.median(samples[1:]) * 1000, 1),
            "bytes": size,
        }
        print(
            f"    {name:<40} median {figures[name]['median_ms']:>9.1f} ms"
            f"  (first {figures[name]['cold_ms']:.1f} ms, {size:,} bytes)"
        )
    return figures


async def one_database(
    name: str, url: str, job_rows: list[tuple[Any, ...]], entries: list[tuple[Any, ...]]
) -> dict[str, Any]:
    from bot.app import build_core

    print(f"  {name}: migrate to 0006, load {len(entries):,} entries and {len(job_rows):,} jobs")
    await asyncio.to_thread(command.upgrade, alembic_config(url), "0006")
    started = time.perf_counter()
    await load(url, job_rows, entries)
    loaded = time.perf_counter() - started
    spent: dict[str, int] = {}
    for entry in entries:
        if entry[1] == "reserve":
            spent[entry[0]] = spent.get(entry[0], 0) + 1
    heavy = max(spent, key=lambda u: spent[u])
    print(f"  {name}: loaded in {loaded:.1f} s; heaviest user {heavy} ({spent[heavy]:,} jobs)")
    settings = Settings.model_validate(
        {"storage": {"url": url}, "credits": {"period": "monthly", "budget": 10_000_000}}
    )
    # The core migrates to the head as it opens the database; the first phase takes the
    # dashboard's indexes away again (0007's downgrade) and the second builds them anew.
    core = await build_core(settings, with_runner=False, clock=lambda: NOW)
    server = DashboardServer("127.0.0.1", 0, PASSWORD, core.service, None)
    port = await server.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", auth=("admin", PASSWORD), timeout=600
        ) as client:
            await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
            await analyze(url)
            print(f"  {name}: without the dashboard indexes (0006)")
            before = await time_pages(client, heavy)
            started = time.perf_counter()
            await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
            indexed = time.perf_counter() - started
            await analyze(url)
            print(f"  {name}: with the indexes of 0007 and 0008 (built in {indexed:.1f} s)")
            after = await time_pages(client, heavy)
    finally:
        await server.stop()
        await core.close()
    return {
        "entries": len(entries),
        "jobs": len(job_rows),
        "load_seconds": round(loaded, 1),
        "index_seconds": round(indexed, 1),
        "heaviest_user_jobs": spent[heavy],
        "without_indexes": before,
        "with_indexes": after,
    }


async def main(quick: bool) -> dict[str, Any]:
    target = 100_000 if quick else LEDGER_TARGET
    job_rows, entries = history(target)
    figures: dict[str, Any] = {"ledger_entries": len(entries), "databases": {}}
    with tempfile.TemporaryDirectory(prefix="kontext-bench-dashboard-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'kontext.db'}"
        figures["databases"]["sqlite"] = await one_database("sqlite", url, job_rows, entries)
    cluster, cluster_url = postgres()
    if cluster is not None:
        try:
            url = await db_url_for(cluster_url)
            assert url is not None
            figures["databases"]["postgresql"] = await one_database(
                "postgresql", url, job_rows, entries
            )
        finally:
            cluster.stop()
    return figures


def run(quick: bool) -> dict[str, Any]:
    print("dashboard: page times on a year of data")
    started = time.perf_counter()
    result = asyncio.run(main(quick))
    print(f"  ({time.perf_counter() - started:.0f} s)")
    return result


__all__ = ["run"]
