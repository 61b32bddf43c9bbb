"""Engine creation, SQLite tuning and migrations.

SQLite is the embedded default: one file, WAL so readers never block the writer, and
``BEGIN IMMEDIATE`` so that a transaction that will write takes the write lock at its
start; without it two read-then-write transactions (a reservation) can both read the
same balance. PostgreSQL gets row locks instead (``dialect.create_and_lock``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_SECONDS = 30
READ_ONLY = "kontext_read_only"
DEFAULT_POOL_SIZE = 10


def async_url(url: str) -> str:
    """Map the operator's URL onto the async driver the bot ships with."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return str(parsed.set(drivername="sqlite+aiosqlite"))
    if backend in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own implicit
        # BEGIN would be DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads need no write lock: in WAL mode they see a consistent snapshot while a
        # writer works, so only read-write transactions queue for the lock.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


P = ParamSpec("P")
R = TypeVar("R")


def completes_when_cancelled(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let a write transaction run to its end even if its caller is cancelled (shutdown,
    a job timeout): the caller still sees the cancellation, but the database never keeps
    a half-done transaction, or SQLite's write lock, behind it."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.shield(method(*args, **kwargs))

    return wrapper


class Database:
    """The one engine of a process, with explicit transactions only."""

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self.url = url
        self.engine = engine
        # SQLite has one write lock per file. Tasks of this process queue for it here,
        # in order and without sleeping, instead of each connection polling the file
        # lock through SQLite's busy handler (which backs off in sleeps of up to 100 ms
        # and turned 100 concurrent requests into seconds of latency). Other processes
        # still meet at the file lock.
        self._sqlite_writes = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """Commit on success, roll back on any exception; every write goes through here."""
        async with self._transaction(read_only=False) as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that only reads: on SQLite it does not wait for the write lock."""
        async with self._transaction(read_only=True) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, *, read_only: bool) -> AsyncIterator[AsyncConnection]:
        if read_only or self._sqlite_writes is None:
            async with self._open(read_only=read_only) as conn:
                yield conn
            return
        async with self._sqlite_writes, self._open(read_only=False) as conn:
            yield conn

    @asynccontextmanager
    async def _open(self, *, read_only: bool) -> AsyncIterator[AsyncConnection]:
        # The end of a transaction is shielded from cancellation: a task cancelled in the
        # middle (shutdown, a timeout) must still roll back and hand its connection back,
        # or SQLite's write lock stays taken by a connection nobody will finish.
        conn = await self.engine.connect()
        try:
            if read_only:
                conn = await conn.execution_options(**{READ_ONLY: True})
            transaction = await conn.begin()
            try:
                yield conn
            except BaseException:
                await asyncio.shield(transaction.rollback())
                raise
            await asyncio.shield(transaction.commit())
        finally:
            await asyncio.shield(conn.close())

    async def dispose(self) -> None:
        await self.engine.dispose()


def create_engine_for(url: str, pool_size: int = DEFAULT_POOL_SIZE) -> AsyncEngine:
    """The engine with the bot's settings. ``pool_size`` connections stay open and as many
    again may open under a burst: an overflow connection is closed when it is handed
    back to a full pool, and on PostgreSQL each new one costs a server process and an
    empty prepared-statement cache (docs/benchmarks.md, ledger), so the size should
    cover the transactions a process runs at once (its job workers and requests)."""
    driver_url = async_url(url)
    pool = {"pool_size": pool_size, "max_overflow": pool_size}
    if make_url(driver_url).get_backend_name() == "sqlite":
        _prepare_sqlite_file(driver_url)
        engine = create_async_engine(
            driver_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}, **pool
        )
        _tune_sqlite(engine)
        return engine
    return create_async_engine(driver_url, pool_pre_ping=True, **pool)


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url
    return config


async def migrate(url: str) -> None:
    """Apply every migration; run at start-up and by ``kontext-bot migrate``.

    Alembic's env runs its own event loop, so it goes to a thread rather than nesting
    loops. The env holds ``migration_lock`` across the upgrade, so processes starting
    together take turns.
    """
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")


async def open_database(
    url: str, *, run_migrations: bool = True, pool_size: int = DEFAULT_POOL_SIZE
) -> Database:
    if run_migrations:
        await migrate(url)
    return Database(url, create_engine_for(url, pool_size))
