"""Slack HTTP mode scaled out: two ``kontext-bot run`` processes on one PostgreSQL
database behind the test's own round-robin, as behind a load balancer.

What makes this safe is that the processes share nothing but the database: a job is
claimed there (``SKIP LOCKED`` and a lease), and an event's idempotency key is unique
there, so the same event delivered to both processes (Slack retrying to another
replica, or a balancer retrying a slow request) makes one job, one charge and one
answer. docs/operations.md ("Several processes") describes the deployment.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from bot.storage import open_database
from bot.storage.schema import jobs, ledger
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import (
    BOT_USER_ID,
    FakeSlack,
    event_callback,
    http_mode_environment,
    signed_json_headers,
)
from tests.pg import Cluster
from tests.support import HANG_GUARD_SECONDS, environment, migrated_database, png, start

CHANNEL = "C0SCALE"


class _Slack(FakeSlack):
    """The fake Slack, waking the test whenever a result upload completes."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = super().api_files_completeUploadExternal(args)
        self.changed.set()
        return answer

    def completed(self) -> list[str]:
        return [str(u.thread_ts) for u in self.uploads.values() if u.completed_at is not None]

    async def until_uploaded(self, count: int) -> None:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.completed()) < count:
                self.changed.clear()
                await self.changed.wait()


@dataclass
class _Process:
    process: asyncio.subprocess.Process
    events_url: str
    ops_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def pg_url(pg_cluster: Cluster | str) -> str:
    return await migrated_database(pg_cluster)


@pytest.fixture
async def slack() -> AsyncIterator[_Slack]:
    async with _Slack() as server:
        yield server


async def _start(
    tmp_path: Path, fake: FakeCoreToday, slack: _Slack, pg_url: str, name: str
) -> _Process:
    http_port, ops_port = _free_port(), _free_port()
    env = environment(
        tmp_path,
        fake,
        KONTEXT_STORAGE__URL=pg_url,
        KONTEXT_STORAGE__DATA_DIR=str(tmp_path / f"data-{name}"),
        **http_mode_environment(slack.api_url, http_port),
        KONTEXT_OPS__ENABLED="true",
        KONTEXT_OPS__PORT=str(ops_port),
    )
    process = await start(["run"], env, tmp_path)
    return _Process(
        process, f"http://127.0.0.1:{http_port}/slack/events", f"http://127.0.0.1:{ops_port}"
    )


@pytest.fixture
async def two(
    tmp_path: Path, fake: FakeCoreToday, slack: _Slack, pg_url: str
) -> AsyncIterator[list[_Process]]:
    """Two processes, each ready by its own /readyz (a balancer's health check)."""
    processes = [await _start(tmp_path, fake, slack, pg_url, name) for name in ("a", "b")]
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(HANG_GUARD_SECONDS):
            for each in processes:
                while True:
                    if each.process.returncode is not None:
                        _, err = await each.process.communicate()
                        raise AssertionError(err.decode()[-3000:])
                    try:
                        if (await http.get(f"{each.ops_url}/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)  # a port opening has no event to await
        yield processes
    finally:
        await _stop(processes)


async def _stop(processes: list[_Process]) -> None:
    """SIGTERM: each process finishes what it runs and exits (0), so nothing can happen
    after this that the assertions would miss."""
    for each in processes:
        if each.process.returncode is None:
            each.process.send_signal(signal.SIGTERM)
    for each in processes:
        _, err = await asyncio.wait_for(each.process.communicate(), HANG_GUARD_SECONDS)
        assert each.process.returncode == 0, err.decode()[-3000:]


def _event(slack: FakeSlack, n: int, image: bytes) -> str:
    file = slack.add_file(f"cat{n}.png", image)
    event = {
        "type": "app_mention",
        "user": f"U{n:04d}",
        "text": f"<@{BOT_USER_ID}> edit number {n}",
        "ts": f"1790000000.{n:06d}",
        "channel": CHANNEL,
        "files": [file],
    }
    return json.dumps(event_callback(event, f"EvSCALE{n:04d}"))


async def _deliver(http: httpx.AsyncClient, url: str, body: str, retry: int = 0) -> None:
    headers = signed_json_headers(body)
    if retry:  # how Slack marks a redelivery
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    answer = await http.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text


async def _accepted(http: httpx.AsyncClient, process: _Process) -> float:
    """Requests this process stored as new jobs (its own ``kontext_requests_total``)."""
    text = (await http.get(f"{process.ops_url}/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "kontext_requests_total" and sample.labels.get("outcome") == "accepted"
    )


async def _ledger(pg_url: str) -> tuple[int, dict[str, int]]:
    database = await open_database(pg_url, run_migrations=False)
    try:
        async with database.transaction() as conn:
            stored = int(await conn.scalar(select(func.count()).select_from(jobs)) or 0)
            kinds = (
                await conn.execute(
                    select(ledger.c.kind, func.count())
                    .where(ledger.c.job_id.is_not(None))
                    .group_by(ledger.c.kind)
                )
            ).all()
        return stored, {str(kind): int(count) for kind, count in kinds}
    finally:
        await database.dispose()


def _posts(slack: FakeSlack, ts: str) -> dict[str, int]:
    """What the bot posted in one request's thread, by method: the job's status message,
    which opens with the acknowledgement ("Queued ...") and is edited in place after,
    whichever process runs the job (issue 24)."""
    posted: dict[str, int] = {}
    for call in slack.calls:
        if call.method.startswith("chat.post") and call.args.get("thread_ts") == ts:
            posted[call.method] = posted.get(call.method, 0) + 1
    return posted


ONE_EACH = {"chat.postMessage": 1}


async def test_events_round_robin_over_two_processes_run_each_job_once(
    two: list[_Process], slack: _Slack, fake: FakeCoreToday, pg_url: str
) -> None:
    image = png((30, 90, 200), (96, 64))
    count = 6
    async with httpx.AsyncClient(timeout=HANG_GUARD_SECONDS) as http:
        # Event n goes to process n mod 2, as a round-robin balancer sends them.
        await asyncio.gather(
            *(_deliver(http, two[n % 2].events_url, _event(slack, n, image)) for n in range(count))
        )
        await slack.until_uploaded(count)
        accepted = [await _accepted(http, each) for each in two]
    await _stop(two)

    assert accepted == [count / 2, count / 2]  # both processes took requests
    expected = [f"1790000000.{n:06d}" for n in range(count)]
    assert sorted(slack.completed()) == expected  # one result per event, in its thread
    prompts = sorted(str((r.input or {}).get("prompt")) for r in fake.creates)
    assert prompts == sorted(f"edit number {n}" for n in range(count))  # one create each
    assert [_posts(slack, ts) for ts in expected] == [ONE_EACH] * count
    stored, kinds = await _ledger(pg_url)
    assert stored == count
    assert kinds == {"reserve": count, "charge": count}  # charged once each, no refund


async def test_the_same_event_delivered_to_both_processes_makes_one_job(
    two: list[_Process], slack: _Slack, fake: FakeCoreToday, pg_url: str
) -> None:
    body = _event(slack, 7, png((200, 160, 20), (80, 80)))
    async with httpx.AsyncClient(timeout=HANG_GUARD_SECONDS) as http:
        # Slack retries an event to whichever replica the balancer picks: here both
        # processes get it at once, the second marked as Slack's retry.
        await asyncio.gather(
            _deliver(http, two[0].events_url, body),
            _deliver(http, two[1].events_url, body, retry=1),
        )
        await slack.until_uploaded(1)
        # And once more, after the job is done (a late retry).
        await _deliver(http, two[1].events_url, body, retry=2)
        accepted = [await _accepted(http, each) for each in two]
    await _stop(two)

    assert sum(accepted) == 1
    ts = "1790000000.000007"
    assert slack.completed() == [ts]  # one result posted
    assert len(fake.creates) == 1  # one image paid for at the provider
    assert _posts(slack, ts) == ONE_EACH  # one status message, the acknowledgement first
    stored, kinds = await _ledger(pg_url)
    assert stored == 1
    assert kinds == {"reserve": 1, "charge": 1}
