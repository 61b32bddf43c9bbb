"""A contest in one channel (issue 24): a burst of mentions against a fake Slack that
enforces Slack's documented rate limits, through the real slack_bolt and slack_sdk.

The limits keep Slack's shape (tiers per method, about one post a second per channel)
but run faster, the bot's rate keys and the fake's limits scaled by the same factor, so
a burst that takes Slack minutes takes the test seconds. What is asserted holds at any
speed: every paid result is posted once, nothing is refunded, everyone is answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, select

from adapters.slack.adapter import SlackAdapter
from adapters.slack.reply import ACKNOWLEDGED, SlackReply, job_metadata
from adapters.slack.status import StatusBoard
from bot.app import build_core
from bot.domain import EditOptions, Job, JobState, UserRef
from bot.jobs.reads import row_to_job
from bot.storage.schema import jobs, ledger
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlack,
    SlackLimits,
)
from tests.support import HANG_GUARD_SECONDS, LoopClock, make_settings, png
from tests.test_slack import CHANNEL, Bot, message_event

JOB = Job(
    id="a" * 32,
    idempotency_key="slack:T0TEST:msg:C0ART:1790000000.000100",
    user=UserRef("slack", TEAM_ID, "U0ALICE"),
    state=JobState.RUNNING,
    prompt="make it a watercolor",
    options=EditOptions(seed=7),
    attachments=(),
    reply_target={},
    cost=120,
    provider="coretoday",
    model="black-forest-labs/flux-kontext-pro",
)
# Slack's minute is this many times shorter for the fake and the bot alike.
SPEED = 60.0
BURST = 150


async def limited_bot(
    tmp_path: Path, fake: FakeCoreToday, slack: FakeSlack, **jobs: Any
) -> AsyncIterator[Bot]:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        slack={
            "enabled": True,
            "mode": "http",
            "bot_token": BOT_TOKEN,
            "api_base_url": slack.api_url,
            "file_hosts": ["127.0.0.1"],
            "signing_secret": SIGNING_SECRET,
            "http_host": "127.0.0.1",
            "http_port": 0,
            # The bot's rate keys at Slack's documented values, as fast as the fake's.
            **SlackLimits().scaled(SPEED).bot_keys(),
        },
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05, **jobs},
    )
    core = await build_core(settings, lambda service: [SlackAdapter(settings.slack, service)])
    adapter = core.frontends["slack"]
    assert isinstance(adapter, SlackAdapter)
    await core.start()
    await adapter.start()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{adapter.port}", timeout=HANG_GUARD_SECONDS
    ) as http:
        yield Bot("http", core, adapter, slack, fake, http)
    await adapter.stop()
    await core.close()


@pytest.fixture
async def contest(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeSlack(limits=SlackLimits().scaled(SPEED)) as slack:
        async for bot in limited_bot(tmp_path, fake, slack, max_concurrent=16):
            yield bot


async def until_finished(bot: Bot, count: int) -> list[Any]:
    """Every job stored and terminal (a guard against a hang, not a measure)."""
    async with asyncio.timeout(HANG_GUARD_SECONDS * 2):
        while True:
            counts = await bot.core.store.counts_by_state()
            done = counts.get("succeeded", 0) + counts.get("failed", 0)
            if done >= count:
                break
            await asyncio.sleep(0.05)
    return [u for u in bot.slack.uploads.values() if u.channel]


async def ledger_kinds(bot: Bot) -> dict[str, int]:
    async with bot.core.db.read() as conn:
        found = await conn.execute(select(ledger.c.kind, func.count()).group_by(ledger.c.kind))
        return {str(kind): int(n) for kind, n in found}


async def only_job(bot: Bot) -> Job:
    async with bot.core.db.read() as conn:
        (row,) = list(await conn.execute(select(jobs)))
    return row_to_job(row)


async def test_150_mentions_in_one_channel_are_all_delivered_once_and_none_refunded(
    contest: Bot,
) -> None:
    bot, slack = contest, contest.slack
    base = time.time() - 300
    events = []
    for n in range(BURST):
        file = slack.add_file(f"entry-{n}.png", png((n, 100, 200)))
        event = message_event(
            "app_mention", f"{base + n:.6f}", f"<@{BOT_USER_ID}> make it a watercolor", [file]
        )
        event["user"] = f"U{n:04d}"  # 150 people, one entry each
        events.append(event)
    # Slack sends them as fast as people post; each answer is a 200.
    answers = await asyncio.gather(*(bot.event(e, f"Ev{n}") for n, e in enumerate(events)))
    assert len(answers) == BURST

    uploads = await until_finished(bot, BURST)
    counts = await bot.core.store.counts_by_state()
    assert counts.get("succeeded") == BURST, counts
    assert len(bot.provider.creates) == BURST  # all paid at the provider
    # Each result posted once, in its own thread, to the person who asked.
    assert len(uploads) == BURST
    assert sorted(u.thread_ts for u in uploads) == sorted(e["ts"] for e in events)
    ledger = await ledger_kinds(bot)
    assert ledger.get("refund", 0) == 0 and ledger.get("charge") == BURST
    # Everyone was told: each job's status message (its acknowledgement first) ends on
    # "Done"; no acknowledgement needed a message of its own.
    statuses = [m for m in slack.messages_in(CHANNEL) if m.get("metadata")]
    assert len(statuses) == BURST
    assert all("Done" in m["text"] for m in statuses), [m["text"] for m in statuses[:3]]
    assert not slack.calls_to("chat.postEphemeral")
    # Each status message was posted once: a newer text replaced one not yet sent.
    assert len(slack.calls_to("chat.postMessage")) == BURST
    # Whatever Slack still refused (pacing keeps it rare) was waited out, not given up.
    refused = slack.ratelimited_by_method()
    assert sum(refused.values()) <= len(slack.calls) // 5, refused


async def test_a_delivery_slack_keeps_refusing_waits_and_is_posted_once(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeSlack() as slack:
        async for bot in limited_bot(tmp_path, fake, slack):
            # More 429s than slack_sdk retries: the upload's completion is refused four
            # times in a row; the result waits for Slack instead of being refunded.
            slack.rate_limit_methods["files.completeUploadExternal"] = 4
            file = slack.add_file("cat.png", png())
            ts = f"{time.time():.6f}"
            event = message_event("app_mention", ts, f"<@{BOT_USER_ID}> blue", [file])
            await bot.event(event, "EvWait")
            (upload,) = await until_finished(bot, 1)
            assert upload.thread_ts == ts
            job = await only_job(bot)
            assert job.state == JobState.SUCCEEDED, job.error_message
            assert "waiting_for" not in job.output_meta
            ledger = await ledger_kinds(bot)
            assert ledger.get("refund", 0) == 0 and ledger.get("charge") == 1
            # The user saw why it took longer, on the status message, before "Done".
            texts = [c.args["text"] for c in slack.calls_to("chat.update")]
            assert any("waiting for Slack" in t for t in texts), texts
            assert "Done" in texts[-1]
            metrics = bot.core.metrics
            assert metrics.deliveries_waiting.labels("slack")._value.get() == 0
            limited = metrics.platform_rate_limited.labels("slack", "files.completeUploadExternal")
            assert limited._value.get() >= 4


async def test_a_channel_slack_will_never_take_is_refunded_with_the_platforms_error_kind(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeSlack() as slack:
        async for bot in limited_bot(tmp_path, fake, slack):
            slack.fail_methods["files.completeUploadExternal"] = ["is_archived"]
            file = slack.add_file("cat.png", png())
            event = message_event(
                "app_mention", f"{time.time():.6f}", f"<@{BOT_USER_ID}> blue", [file]
            )
            await bot.event(event, "EvArch")
            await until_finished(bot, 1)
            job = await only_job(bot)
            assert job.state == JobState.FAILED
            # The provider did its part: the failure is the platform's, not the provider's.
            assert job.error_kind == "platform"
            assert bot.core.metrics.errors.labels("platform")._value.get() == 1


async def test_a_process_that_did_not_acknowledge_edits_the_status_message_it_finds(
    loop_clock: LoopClock,
) -> None:
    """Several processes on one database: the one that received a mention posts its
    status message; the one that runs the job finds it by its metadata and edits it,
    waiting while it is not posted yet, instead of posting a second."""
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        target = {
            "channel": CHANNEL,
            "user": "U0ALICE",
            "thread_ts": "1790000000.000100",
            ACKNOWLEDGED: True,
        }
        job = replace(JOB, created_at=time.time())
        held = slack.hold("chat.postMessage")  # the receiving process's post is slow
        receiving = StatusBoard(client)
        receiving.line(job.id, CHANNEL, target["thread_ts"]).show("Queued", job_metadata(job.id))
        await asyncio.wait_for(held.reached.wait(), HANG_GUARD_SECONDS)

        running = SlackReply(client, target, board=StatusBoard(client))  # another process
        await running.progress(job, "editing")
        line = running.line(job)
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(slack.calls_to("conversations.replies")) < 1:
                await asyncio.sleep(0.01)
        held.release()  # now the acknowledgement is in the thread
        await receiving.line(job.id, CHANNEL, target["thread_ts"]).settled()
        loop_clock.advance(1.0)  # the runner's next look
        await line.settled()

        assert len(slack.calls_to("chat.postMessage")) == 1
        (edit,) = slack.calls_to("chat.update")
        assert edit.args["ts"] == line.ts and "Editing" in edit.args["text"]


async def test_status_texts_that_pile_up_while_slack_is_slow_are_skipped_for_the_newest() -> None:
    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        line = StatusBoard(client).line(JOB.id, CHANNEL, None)
        line.show("Queued", job_metadata(JOB.id))
        await line.settled()
        held = slack.hold("chat.update")
        line.show("Editing", job_metadata(JOB.id))
        await asyncio.wait_for(held.reached.wait(), HANG_GUARD_SECONDS)
        for step in range(1, 6):  # progress while the edit before is on its way
            line.show(f"step {step} of 5", job_metadata(JOB.id))
        line.show("Done", job_metadata(JOB.id))
        held.release()
        await line.settled()
        assert [c.args["text"] for c in slack.calls_to("chat.update")] == ["Editing", "Done"]
        assert len(slack.calls_to("chat.postMessage")) == 1
        (message,) = slack.messages_in(CHANNEL)
        assert message["text"] == "Done"
