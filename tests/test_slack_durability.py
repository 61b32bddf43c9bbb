"""Killing the bot (SIGKILL, as a process) at each stage of a Slack request.

``kontext-bot run`` serves Slack in HTTP mode against the fake Slack and the fake
provider, both run by the test, and the test plays Slack's side: it sends signed events
and, as Slack does for an event that got no 200, sends it again after a kill. Each stage
is reached by holding the one Web API call the bot makes there (``FakeSlack.hold``) or by
a provider that never finishes, so the kill falls at that exact moment, not at a time.
Then the process is started again, and every request it acknowledged must end delivered
(exactly one image in the thread) or refunded with a message, charged at most once.

Between the kill and the restart the test lets the dead process's leases run out by
clearing them in the database: that is what time would do, without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import (
    BOT_USER_ID,
    TEAM_ID,
    FakeSlack,
    Hold,
    event_callback,
    http_mode_environment,
    signed_json_headers,
)
from tests.support import environment, png, start

USER = "U0ALICE"
CHANNEL = "C0ART"
COST, ALLOWANCE = 120, 1200
GUARD = 60  # seconds: a hang guard, never the thing measured


@dataclass
class BotProcess:
    """One ``kontext-bot run``; its log is drained (a full pipe would stall it)."""

    process: asyncio.subprocess.Process
    port: asyncio.Future[int]
    log: list[dict[str, Any]] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"event": raw.decode(errors="replace").rstrip()}
            self.log.append(line)
            if line.get("event") == "slack adapter listening" and not self.port.done():
                self.port.set_result(int(line["port"]))
        if not self.port.done():
            self.port.set_exception(RuntimeError(f"the bot exited: {self.log[-5:]}"))

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self._drained()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), GUARD)
        await self._drained()

    async def _drained(self) -> None:
        if self.drain is not None:
            await asyncio.wait_for(self.drain, GUARD)


@dataclass
class World:
    tmp_path: Path
    slack: FakeSlack
    provider: FakeCoreToday
    env: dict[str, str]
    http: httpx.AsyncClient
    bots: list[BotProcess] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.tmp_path / "kontext.db"

    async def launch(self) -> BotProcess:
        process = await start(["run"], self.env, self.tmp_path)
        bot = BotProcess(process, asyncio.get_running_loop().create_future())
        bot.drain = asyncio.create_task(bot._read())
        self.bots.append(bot)
        await asyncio.wait_for(asyncio.shield(bot.port), GUARD)
        return bot

    async def event(self, bot: BotProcess, event: dict[str, Any], retry: int = 0) -> int:
        """Deliver an Events API event as Slack does; the HTTP status it got."""
        body = json.dumps(event_callback(event, "Ev0DURABLE"))
        headers = signed_json_headers(body)
        if retry:  # https://docs.slack.dev/apis/events-api/#retries
            headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "timeout"})
        answer = await self.http.post(
            f"http://127.0.0.1:{await bot.port}/slack/events", content=body, headers=headers
        )
        return answer.status_code

    def expire_leases(self) -> None:
        """The dead process's leases run out (what time would do, done at once)."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn, conn:
            conn.execute("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL")

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            try:
                return list(conn.execute(sql, args))
            except sqlite3.OperationalError:  # not migrated yet
                return []

    def jobs(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in self.query("SELECT id, state FROM jobs")]

    def ledger(self, job_id: str) -> list[str]:
        rows = self.query("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", job_id)
        return [row[0] for row in rows]

    def uploads_in(self, thread_ts: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.threads.get((CHANNEL, thread_ts), [])
            if m.get("bot_id") and m.get("files")
        ]

    def status_messages(self, job_id: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.messages_in(CHANNEL)
            if (m.get("metadata") or {}).get("event_payload", {}).get("job_id") == job_id
        ]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state the test cannot be told about (a database row, a poll count)."""
    try:
        async with asyncio.timeout(GUARD):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


@pytest.fixture
async def world(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[World]:
    async with FakeSlack() as slack, httpx.AsyncClient(timeout=GUARD) as http:
        env = environment(
            tmp_path,
            fake,
            **http_mode_environment(slack.api_url, 0),
            KONTEXT_LOG__FORMAT="json",
        )
        world = World(tmp_path, slack, fake, env, http)
        try:
            yield world
        finally:
            for bot in world.bots:
                with contextlib.suppress(ProcessLookupError):
                    await bot.stop()


def mention(
    ts: str, files: list[dict[str, Any]] | None, thread_ts: str | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "channel": CHANNEL,
        "user": USER,
        "text": f"<@{BOT_USER_ID}> make it blue",
        "ts": ts,
        "team": TEAM_ID,
    }
    if files:
        event["files"] = files
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


# Each stage: the call held to stop the bot there (None: the provider's wait), whether
# the hold comes after the call's effect, and whether Slack got its 200 by the kill.
STAGES: dict[str, tuple[str | None, bool, bool]] = {
    # The listener looks up the thread's image before it stores the job.
    "before the 200": ("conversations.replies", False, False),
    # The first call after the listener answered: the status message, which opens
    # with the acknowledgement (issue 24), while the job may still be queued.
    "right after the 200": ("chat.postMessage", False, True),
    # A file the event names by id only is looked up by the runner.
    "during the file look-up": ("files.info", False, True),
    "during the provider wait": (None, False, True),
    "during delivery, before the share": ("files.completeUploadExternal", False, True),
    "during delivery, after the share": ("files.completeUploadExternal", True, True),
}


@pytest.mark.parametrize("stage", list(STAGES))
async def test_a_kill_at_any_stage_ends_delivered_once_and_charged_once(
    world: World, stage: str
) -> None:
    method, after, acked_by_kill = STAGES[stage]
    slack, provider = world.slack, world.provider
    image = slack.add_file("cat.png", png((30, 60, 200)))
    base = time.time()
    ts = f"{base:.6f}"
    if stage == "before the 200":
        # A follow-up in a thread that edits the thread's image: the listener reads the
        # thread (conversations.replies) before it answers Slack.
        parent = slack.post_user_message(CHANNEL, "a cat", user=USER, files=[image])
        ts = f"{base + 1:.6f}"
        event = mention(ts, None, thread_ts=parent["ts"])
        thread = parent["ts"]
    elif stage == "during the file look-up":
        # Slack sends some shares as a bare id: looked up with files.info by the runner.
        event = mention(ts, [{"id": image["id"], "file_access": "check_file_info"}])
        thread = ts
    else:
        event = mention(ts, [image])
        thread = ts
    slack.post_user_message(
        CHANNEL, event["text"], user=USER, ts=ts, thread_ts=event.get("thread_ts")
    )
    held: Hold | None = slack.hold(method, after=after) if method else None
    if method is None:
        provider.script.outcome = "never"

    first = await world.launch()
    sent = asyncio.create_task(world.event(first, event))
    if held is not None:
        await asyncio.wait_for(held.reached.wait(), GUARD)
    else:  # the prediction is stored and being waited for
        await until(lambda: provider.polls > 0, "a status poll")
    if acked_by_kill:
        assert await asyncio.wait_for(sent, GUARD) == 200
    await first.kill()
    if held is not None:
        held.release()

    if not acked_by_kill:
        # No 200: the request may be lost to the bot, never to Slack.
        with pytest.raises(httpx.TransportError):
            await sent
        assert world.jobs() == []
        assert world.query("SELECT kind FROM ledger WHERE kind = 'reserve'") == []
    else:
        ((job_id, state),) = world.jobs()
        assert state in ("queued", "running", "delivering")
        assert world.ledger(job_id) == ["reserve"]  # reserved, neither charged nor refunded
    if method is None:  # the provider finishes the orphaned prediction meanwhile
        provider.script.outcome = "succeeded"
        for prediction in provider.predictions.values():
            prediction.outcome = "succeeded"

    world.expire_leases()
    second = await world.launch()
    if not acked_by_kill:
        # Slack resends an event that got no 200 (https://docs.slack.dev/apis/events-api/#retries).
        assert await world.event(second, event, retry=1) == 200
    await until(lambda: any(s in ("succeeded", "failed") for _, s in world.jobs()), "the end")
    ((job_id, state),) = world.jobs()
    await second.stop()

    assert state == "succeeded", world.query("SELECT error_message FROM jobs")
    (upload,) = world.uploads_in(thread)
    assert f"job {job_id[:8]}" in upload["text"]
    assert world.ledger(job_id) == ["reserve", "charge"]
    assert len(provider.creates) == 1
    rows = world.query(
        "SELECT SUM(amount) FROM ledger WHERE user_ref = ?", f"slack:{TEAM_ID}:{USER}"
    )
    assert rows == [(ALLOWANCE - COST,)]
    if stage.startswith("during delivery"):
        # The status message was found by its metadata and finished, not posted anew.
        (status,) = world.status_messages(job_id)
        assert "Done" in status["text"]
    # History links to the one upload, also when the restarted bot found it instead of
    # posting (issue 19): the file, its message's ts, its permalink.
    ((result,),) = world.query("SELECT result FROM jobs")
    delivered = json.loads(result)["delivered"]
    assert delivered["file"] == upload["files"][0]["id"]
    assert delivered["ts"] == upload["ts"]
    assert delivered["link"] == upload["files"][0]["permalink"]


def _waiting_for_slack(world: World) -> bool:
    rows = world.query("SELECT result FROM jobs")
    return bool(rows) and "waiting_for" in str(rows[0][0] or "")


async def test_a_delivery_rate_limited_across_a_kill_is_delivered_once_after_the_restart(
    world: World,
) -> None:
    """Issue 24: Slack keeps saying "slow down" to a paid result; the bot is killed while
    it waits; the restarted bot posts the kept result once, charged once."""
    slack, provider = world.slack, world.provider
    image = slack.add_file("cat.png", png((30, 60, 200)))
    ts = f"{time.time():.6f}"
    event = mention(ts, [image])
    slack.post_user_message(CHANNEL, event["text"], user=USER, ts=ts)
    slack.rate_limit_methods["files.completeUploadExternal"] = 10**6  # until lifted

    first = await world.launch()
    assert await world.event(first, event) == 200
    await until(lambda: _waiting_for_slack(world), "the result held back by Slack's limit")
    await first.kill()
    ((job_id, state),) = world.jobs()
    assert state == "delivering" and world.ledger(job_id) == ["reserve"]

    slack.rate_limit_methods["files.completeUploadExternal"] = 0  # Slack lets posts through
    world.expire_leases()
    second = await world.launch()
    await until(lambda: any(s in ("succeeded", "failed") for _, s in world.jobs()), "the end")
    await second.stop()

    ((job_id, state),) = world.jobs()
    assert state == "succeeded", world.query("SELECT error_message FROM jobs")
    (upload,) = world.uploads_in(ts)
    assert f"job {job_id[:8]}" in upload["text"]
    assert world.ledger(job_id) == ["reserve", "charge"]
    assert len(provider.creates) == 1
    (status,) = world.status_messages(job_id)  # found again and finished, not posted anew
    assert "Done" in status["text"]
