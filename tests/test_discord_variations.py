"""Variations on Discord (``count``, issue 27), through the real discord.py against the
fake Discord and the fake core.today: one message with every image and a row of "Edit
#k" / "Re-roll #k" buttons, a failed variation named with its refund, a request that
cannot pay for all refused privately and free, and "Edit #2" editing image 2."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import GUILD_ID, FakeDiscord
from tests.support import png
from tests.test_discord import ALICE, Bot, assert_refused_privately, start_bot


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(
            tmp_path, fake, discord, jobs={"per_user_concurrent": 4}
        )
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


async def test_the_command_offers_count_1_to_4(bot: Bot) -> None:
    kontext = next(c for c in bot.discord.commands[GUILD_ID] if c["name"] == "kontext")
    (count,) = [o for o in kontext["options"] if o["name"] == "count"]
    assert count["type"] == 4 and [c["value"] for c in count["choices"]] == [1, 2, 3, 4]


async def test_count_4_posts_one_message_with_four_images_and_charges_four(bot: Bot) -> None:
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor", "count": 4}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: asked.callbacks)
    queued = asked.callbacks[0]["data"]["content"]
    assert "Queued 4 variations" in queued and "480 credits reserved" in queued
    (message,) = await bot.results(1)
    assert len(message["attachments"]) == 4
    rows = [[c["label"] for c in row["components"]] for row in message["components"]]
    assert rows == [
        [f"Edit #{k}" for k in range(1, 5)],
        [f"Re-roll #{k}" for k in range(1, 5)],
        ["Delete"],
    ]
    assert all(len(row["components"]) <= 5 for row in message["components"])
    assert "4 of 4 variations" in message["content"]
    assert len(bot.provider.creates) == 4
    assert await bot.balance() == 1200 - 4 * 120
    assert len(bot.result_messages()) == 1, "one message, not four"

    # Edit #2: the second image is the next edit's input.
    again = await bot.discord.click(message, "Edit #2", user_id=ALICE)
    await bot.until(lambda: again.modal)
    await bot.discord.submit_modal(again, {"prompt": "now in ink"}, user_id=ALICE)
    await bot.results(2)
    create = bot.provider.creates[4]
    second = next(a for a in message["attachments"] if a["filename"].endswith("-2.png"))
    assert create.file_bytes is not None
    assert create.file_bytes == bot.discord.attachment_bytes(second)
    assert Image.open(io.BytesIO(create.file_bytes)).size


async def test_one_failing_variation_is_named_with_its_refund(bot: Bot) -> None:
    bot.provider.script.create_failures = [422]
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor", "count": 4}, user_id=ALICE, attachment=image
    )
    (message,) = await bot.results(1)
    assert len(message["attachments"]) == 3
    assert "3 of 4 variations" in message["content"]
    assert "failed" in message["content"] and "120 credits were refunded" in message["content"]
    assert await bot.balance() == 1200 - 3 * 120


async def test_count_4_without_the_credits_is_refused_privately_and_free(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(
            tmp_path, fake, discord, credits={"allowance": 300}
        )
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            image = discord.upload(png(), "cat.png", "image/png")
            asked = await discord.slash_command(
                "kontext", {"prompt": "a watercolor", "count": 4}, user_id=ALICE, attachment=image
            )
            await bot.until(lambda: asked.callbacks)
            assert_refused_privately(discord, asked, "4 variations cost 480")
            assert fake.creates == [] and await bot.balance() == 300
        finally:
            await adapter.stop()
            await core.close()


async def test_a_group_is_posted_in_the_requesters_language(bot: Bot) -> None:
    """A German Discord client: the acknowledgement, the group's lines and its buttons
    are German (the job's language, kept by every variation)."""
    bot.discord.user_locales[ALICE] = "de"
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor", "count": 2}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: asked.callbacks)
    queued = asked.callbacks[0]["data"]["content"]
    assert "2 Varianten eingereiht" in queued and "240 Credits reserviert (2 x 120)" in queued
    (message,) = await bot.results(1)
    assert "2 von 2 Varianten · 240 Credits verbraucht · 960 übrig" in message["content"]
    assert "#1: Seed " in message["content"] and "#2: Seed " in message["content"]
    rows = [[c["label"] for c in row["components"]] for row in message["components"]]
    assert rows[:2] == [["Bearbeiten #1", "Bearbeiten #2"], ["Neu würfeln #1", "Neu würfeln #2"]]
