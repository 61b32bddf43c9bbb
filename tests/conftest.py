"""Shared fixtures: a throwaway database per test and a controllable clock."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from bot.config import Settings
from bot.jobstore import JobStore
from bot.ledger import AllowancePolicy
from bot.storage import Database, open_database
from tests.fakes.coretoday import FakeCoreToday
from tests.pg import Cluster, ClusterUnavailable, start_cluster


class FakeClock:
    """Wall time the tests move by hand (allowance periods, lease expiry)."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


async def _fresh_database(cluster: Cluster) -> str:
    import asyncpg

    name = f"kontext_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(cluster.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return cluster.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs unchanged against both databases."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kontext.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    if isinstance(cluster, str):
        pytest.skip(f"PostgreSQL could not be started: {cluster}")
    return await _fresh_database(cluster)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def policy() -> AllowancePolicy:
    return AllowancePolicy(amount=1200, period="daily")


@pytest.fixture
def store(db: Database, policy: AllowancePolicy, clock: FakeClock) -> JobStore:
    return JobStore(db, policy, clock)


def make_settings(
    tmp_path: Path, base_url: str = "http://127.0.0.1:9", **sections: dict
) -> Settings:  # type: ignore[type-arg]
    """Settings for a test: its own database and data dir, the fake provider's URL."""
    data: dict[str, dict[str, object]] = {
        "storage": {
            "url": f"sqlite:///{tmp_path / 'kontext.db'}",
            "data_dir": str(tmp_path / "data"),
        },
        "provider": {"base_url": base_url, "api_key": "cdt_test_key_0123456789abcdef"},
        "jobs": {"poll_initial_seconds": 0.05, "poll_max_seconds": 0.2, "timeout_seconds": 20},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Settings.model_validate(data)
