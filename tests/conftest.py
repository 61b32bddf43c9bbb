"""Shared fixtures: a throwaway database per test and controllable clocks."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from bot.credits.limits import Limits
from bot.jobstore import JobStore
from bot.storage import Database, open_database
from tests.fakes.coretoday import FakeCoreToday
from tests.pg import Cluster, ClusterUnavailable, start_cluster
from tests.support import FakeClock, LoopClock, fresh_database


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
