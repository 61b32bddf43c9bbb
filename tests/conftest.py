"""Shared fixtures: a throwaway database per test and controllable clocks."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
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


# A deadline in a test guards against a hang; it is never the thing being measured, so it
# is generous enough for a machine busy with other work (CI on a shared machine).
HANG_GUARD_SECONDS = 120.0


class LoopClock:
    """The running event loop's clock, moved forward by hand.

    ``asyncio.timeout``, ``asyncio.sleep``, ``call_later`` and the HTTP clients' timeouts
    all schedule on ``loop.time()``: after ``advance(s)`` every timer due within ``s``
    fires at the loop's next turn, as if that much time had passed. A test of a timeout
    thus sets a generous one, waits (on events) until the work is where the timeout must
    find it, and then moves the clock past it, instead of racing a short timeout against
    the work on a machine of unknown speed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.offset = 0.0
        loop.time = self._time  # type: ignore[method-assign]

    def _time(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
async def loop_clock() -> LoopClock:
    return LoopClock(asyncio.get_running_loop())


# Python 3.11 before 3.11.8 (python/cpython#106905, pytest-dev/pytest#10763): the AST
# constructor's recursion counter is one per interpreter, shared by every ``ast.parse``.
# When a garbage collection that starts inside an ``ast.parse`` (pytest rewriting a test
# module's asserts, or rendering a failure, which parses the whole test module) finalises
# an asyncio Task whose exception nobody retrieved, asyncio logs "Task exception was never
# retrieved" with its traceback, and formatting that traceback calls ``ast.parse`` again
# (3.11's caret anchors); the outer call then raises "SystemError: AST constructor
# recursion depth mismatch": an INTERNALERROR that ends the run and hides the failing
# test. A test cut short by a timeout leaves exactly such tasks behind. So the garbage of
# each phase of a test is collected as that phase ends, before pytest renders anything,
# and never inside an ``ast.parse``; freezing what collection imported keeps these
# collections down to the objects the tests themselves made (about a millisecond).


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        gc.collect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    try:
        return (yield)
    finally:
        gc.collect()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)
    finally:
        gc.collect()


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
