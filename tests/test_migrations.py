"""The migrations create exactly the schema the code uses, once, however many processes
start together."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot.storage import Database
from bot.storage.database import alembic_config, create_engine_for
from bot.storage.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
# "Any number of processes": the issue asks for four; eight make the SQLite race (another
# process slipping in between two of Alembic's per-migration commits) show without the
# lock in most runs, where four rarely did. PostgreSQL fails without it every time.
PROCESSES = 8
HANG_GUARD_SECONDS = 300  # never reached on a healthy run, however busy the machine


async def test_migrated_schema_matches_metadata(db: Database) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn)
        return compare_metadata(context, metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrating_twice_is_harmless(db_url: str) -> None:
    """A restart migrates again: the second run applies nothing, keeps the rows the bot
    wrote in between, and leaves the database at the one head revision."""
    from bot.storage.database import migrate

    await migrate(db_url)
    engine = create_engine_for(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO ledger (user_ref, kind, amount, created_at) "
                    "VALUES ('slack:T1:U1', 'grant', 120, 0)"
                )
            )
        await migrate(db_url)
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            kept = (await conn.execute(text("SELECT user_ref, amount FROM ledger"))).all()
    finally:
        await engine.dispose()
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert [tuple(row) for row in versions] == [(head,)]
    assert [tuple(row) for row in kept] == [("slack:T1:U1", 120)]


async def _start_together(db_url: str, tmp_path: Path) -> list[tuple[int, str]]:
    """Start PROCESSES ``kontext-bot migrate`` processes, release them at one moment,
    and return each one's exit code and stderr."""
    # One pipe shared by every worker: closing its write end releases them all at once.
    barrier, release = os.pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    env.update(PYTHONPATH=str(ROOT), KONTEXT_STORAGE__URL=db_url)
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.workers.migrate",
            str(barrier),
            env=env,
            cwd=tmp_path,
            pass_fds=(barrier,),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    os.close(barrier)
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            for worker in workers:  # each has imported everything and waits at the barrier
                assert worker.stdout is not None
                assert await worker.stdout.readline() == b"ready\n"
            os.close(release)
            outputs = await asyncio.gather(*(w.communicate() for w in workers))
    finally:
        with contextlib.suppress(OSError):  # a failed test still lets the workers go
            os.close(release)
    return [(w.returncode or 0, err.decode()) for w, (_, err) in zip(workers, outputs, strict=True)]


async def test_processes_starting_together_on_a_fresh_database_migrate_it_once(
    db_url: str, tmp_path: Path
) -> None:
    results = await _start_together(db_url, tmp_path)

    for code, err in results:
        assert code == 0, err[-3000:]
    # Alembic logs each step it applies: the first step ran in exactly one process.
    appliers = [err for _, err in results if "Running upgrade  -> 0001" in err]
    assert len(appliers) == 1, [err[-1000:] for _, err in results]

    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    engine = create_engine_for(db_url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
            tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    assert [tuple(row) for row in versions] == [(head,)]
    assert set(metadata.tables) <= tables
