"""Variations on Slack (``--n``, issue 27), through the real slack_bolt/slack_sdk against
the fake Slack and the fake core.today: ``/kontext ... --n 4`` opens the modal with its
Variations select at 4, and the four images come back in one message (one
files_upload_v2 with every file) with a line per variation; a failed one is named with
its refund; a repeated delivery finds the post instead of making a second one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain import EditResult, GroupMember, GroupResult, JobState, UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import TEAM_ID
from tests.support import HANG_GUARD_SECONDS, png
from tests.test_slack import CHANNEL, USER, Bot, balance, serving, submission


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async for served in serving("http", tmp_path, fake, jobs={"per_user_concurrent": 4}):
        yield served


def with_count(payload: dict[str, Any], count: int) -> dict[str, Any]:
    """The submission with the Variations select set to ``count``."""
    values = payload["view"]["state"]["values"]
    values["count"] = {"value": {"selected_option": {"value": str(count)}}}
    return payload


def file_shares(bot: Bot) -> list[dict[str, Any]]:
    return [m for m in bot.slack.messages_in(CHANNEL) if m.get("subtype") == "file_share"]


async def test_n4_posts_one_message_with_four_files_and_charges_four(bot: Bot) -> None:
    await bot.command("make it a watercolor --n 4")
    view = await bot.opened_view()
    block = next(b for b in view["blocks"] if b["block_id"] == "count")
    assert [o["value"] for o in block["element"]["options"]] == ["1", "2", "3", "4"]
    assert block["element"]["initial_option"]["value"] == "4", "--n preselects"
    file = bot.slack.add_file("cat.png", png())
    payload = submission(bot, view, prompt="make it a watercolor", file=file)
    await bot.interact(with_count(payload, 4))
    await bot.uploaded(4)
    (message,) = file_shares(bot)
    assert len(message["files"]) == 4
    assert "4 of 4 variations" in message["text"]
    assert all(f"#{k}: seed" in message["text"] for k in range(1, 5))
    assert len(bot.provider.creates) == 4
    assert any("Queued 4 variations" in t and "480 credits" in t for t in await bot.ephemerals())
    assert await balance(bot) == 1200 - 480
    statuses = [m for m in bot.slack.messages_in(CHANNEL) if m.get("metadata")]
    assert len(statuses) == 1, "the variations share one status message"


async def test_a_repeated_group_delivery_is_found_not_posted_again(bot: Bot) -> None:
    await bot.command("make it a watercolor --n 2")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(with_count(submission(bot, view, prompt="make it ink", file=file), 2))
    await bot.uploaded(2)
    (message,) = file_shares(bot)
    jobs = sorted(
        await bot.core.store.recent_for_user(UserRef("slack", TEAM_ID, USER), 10),
        key=lambda j: j.group_index,
    )
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        jobs = [await bot.core.runner.wait_for(j.id) for j in jobs]
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 2
    # The group as the pipeline would hand it again after a restart: the look goes by
    # the first image's name and the group's marker, not by the bytes.
    results = tuple(
        GroupMember(
            j,
            result=EditResult(
                j, png(), "image/png", f"kontext-{j.id[:8]}-{j.group_index}.png", 64, 48, 960, 1.0
            ),
        )
        for j in jobs
    )
    group = GroupResult(results, balance_after=960, elapsed_seconds=1.0)
    where = await bot.adapter.reply_for(jobs[0]).deliver_group(group, maybe_delivered=True)
    assert len(file_shares(bot)) == 1, "not posted twice"
    assert where and set(where) == {j.id for j in jobs}
    assert message["files"]


async def test_one_failing_variation_is_named_with_its_refund(bot: Bot) -> None:
    bot.provider.script.create_failures = [422]
    await bot.command("make it a watercolor")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(with_count(submission(bot, view, prompt="make it ink", file=file), 3))
    await bot.uploaded(2)
    (message,) = file_shares(bot)
    assert len(message["files"]) == 2
    assert "2 of 3 variations" in message["text"]
    assert "failed" in message["text"] and "120 credits were refunded" in message["text"]
    assert await balance(bot) == 1200 - 240


async def test_n4_without_the_credits_is_refused_privately_and_free(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async for bot in serving("http", tmp_path, fake, credits={"allowance": 300}):
        await bot.command("make it a watercolor --n 4")
        view = await bot.opened_view()
        file = bot.slack.add_file("cat.png", png())
        await bot.interact(with_count(submission(bot, view, prompt="make it ink", file=file), 4))
        said = await bot.ephemerals()
        assert any("4 variations cost 480" in text for text in said), said
        assert fake.creates == [] and file_shares(bot) == []
        assert await balance(bot) == 300


async def test_the_bot_removed_before_a_group_is_posted_refunds_every_variation(
    bot: Bot,
) -> None:
    """The channel closed to the bot (removed) while the variations ran: the group
    cannot be posted, every member is refunded, and the requester is told once,
    privately, in the plural."""
    bot.provider.script.outcome = "never"  # the provider works until the test says
    await bot.command("")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(with_count(submission(bot, view, prompt="make it ink", file=file), 2))
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while len(bot.provider.creates) < 2:
            await asyncio.sleep(0.02)
    assert await balance(bot) == 1200 - 240
    bot.slack.channel(CHANNEL).bot_member = False  # someone removed the bot meanwhile
    for prediction in bot.provider.predictions.values():
        prediction.outcome = "succeeded"
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while await balance(bot) != 1200:
            await asyncio.sleep(0.02)
        while not any("could not be delivered" in r["text"] for r in bot.slack.responses):
            await asyncio.sleep(0.02)
    # Told through the form's response_url (chat.postEphemeral is refused: the bot is
    # no longer in the channel), once for the group.
    (notice,) = [r["text"] for r in bot.slack.responses if "could not be delivered" in r["text"]]
    assert "the edited images could not be delivered" in notice
    assert "/invite @kontext" in notice and "refunded" in notice
    assert file_shares(bot) == [] and len(bot.provider.creates) == 2
    jobs = await bot.core.store.recent_for_user(UserRef("slack", TEAM_ID, USER), 10)
    assert sorted(j.state.value for j in jobs) == ["failed", "failed"]
