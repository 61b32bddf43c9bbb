"""Shared fixtures: a throwaway database per test and a controllable clock."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from bot.jobstore import JobStore
from bot.limits import Limits
from bot.storage import Database, open_database
from tests.fakes.coretoday import FakeCoreToday
from tests.pg import Cluster, ClusterUnavailable, start_cluster
from tests.support import FakeClock, fresh_database


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Tests that run the CLI configure logging for the process; undo it afterwards."""
    handlers = logging.getLogger().handlers[:]
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
async def fake() -> AsyncIterator[FakeCoreToday]:
    async with FakeCoreToday() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster | str]:
    """One throwaway PostgreSQL cluster for the session, or the reason there is none."""
    try:
        cluster = start_cluster()
    except ClusterUnavailable as exc:
        yield str(exc)
        return
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs unchanged against both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kontext.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    if isinstance(cluster, str):
        pytest.skip(f"PostgreSQL could not be started: {cluster}")
    return await fresh_database(cluster)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def base_limits() -> Limits:
    return Limits(allowance=1200, period="daily")


@pytest.fixture
def store(db: Database, base_limits: Limits, clock: FakeClock) -> JobStore:
    return JobStore(db, base_limits, clock)
