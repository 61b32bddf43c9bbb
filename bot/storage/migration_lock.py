"""One migrator at a time, however many processes start together.

A deploy with replicas starts several processes on one database at once, and each
applies the migrations at start-up. Alembic itself does not serialise them: on
PostgreSQL two processes both see no ``alembic_version`` and both create the tables (one
dies with "relation ... already exists"); on SQLite Alembic commits after each
migration, so a second process can read the version between two steps and replay a
step the first one is about to run. So the whole upgrade (reading the version, applying
the steps, writing the version) runs under a lock that spans processes:

- PostgreSQL: a session-level advisory lock, on a connection of its own that does
  nothing else, held until the upgrade has committed. Advisory locks are scoped to the
  database, so other databases on the same server are not held up. Should the process
  die, the server ends its session and the lock goes with it.
- SQLite: an exclusive ``flock`` on a lock file beside the database file
  (``<database>.migrate.lock``; it stays there, empty, and is harmless). The kernel
  drops the lock when the process dies. An in-memory database belongs to one process
  and needs no lock.

A process that waits finds, once it holds the lock, the schema at head and does nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

# Any fixed 64-bit number that no other code takes an advisory lock on: the first eight
# bytes of sha256(b"kontext-bot migrations"), read as a signed big-endian integer.
ADVISORY_LOCK_KEY = 0x507BF90BBDA10048
LOCK_FILE_SUFFIX = ".migrate.lock"


@asynccontextmanager
async def migration_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the database's migration lock for the body (waiting for it as long as it
    takes: a migration in another process runs to its end)."""
    if engine.dialect.name == "postgresql":
        async with _advisory_lock(engine):
            yield
        return
    if engine.dialect.name == "sqlite":
        path = sqlite_lock_path(engine.url.database)
        if path is None:
            yield
            return
        async with _file_lock(path):
            yield
        return
    raise ValueError(f"no migration lock for the {engine.dialect.name} dialect")


def sqlite_lock_path(database: str | None) -> Path | None:
    """The lock file for a SQLite database file, or None for an in-memory database."""
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).expanduser().with_name(Path(database).name + LOCK_FILE_SUFFIX)


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.connect() as conn:
        await conn.execute(select(func.pg_advisory_lock(ADVISORY_LOCK_KEY)))
        # The lock belongs to the session, not to this transaction: end the transaction
        # so that the connection does not sit "idle in transaction" while others wait.
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
            await conn.commit()


@asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # flock blocks until the holder lets go; the wait happens in a thread so the
        # loop stays responsive. (The migrations run on a loop of their own.)
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
