"""Several images and Cancel on Discord (issue 26), through the real discord.py against the fake
Discord and the fake core.today: ``/kontext`` with ``image`` and ``image2``, the options
the configured models can use, and an art-channel reply to a result that brings one new
attachment (the result first, then the attachment)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.domain import UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import ART_CHANNEL_ID, CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.support import HANG_GUARD_SECONDS, png
from tests.test_discord import ALICE, BOB, Bot, start_bot

FLUX2_ID = "black-forest-labs/flux-2-pro"
MODELS: list[dict[str, object]] = [
    {
        "name": "pro",
        "model": "black-forest-labs/flux-kontext-pro",
        "cost_per_image": 120,
        "default": True,
    },
    {"name": "flux2", "model": FLUX2_ID, "cost_per_image": 100},
]


@pytest.fixture
async def multi_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord, models=MODELS)
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


async def test_the_command_offers_image2_to_image8_resolution_and_webp(multi_bot: Bot) -> None:
    kontext = next(c for c in multi_bot.discord.commands[GUILD_ID] if c["name"] == "kontext")
    types = {o["name"]: o["type"] for o in kontext["options"]}
    assert [n for n in types if n.startswith("image")] == ["image"] + [
        f"image{n}" for n in range(2, 9)
    ], "flux2 takes 8: image2 … image8, no image9"
    assert all(types[f"image{n}"] == 11 for n in range(2, 9))
    options = {o["name"]: o for o in kontext["options"]}
    assert [c["value"] for c in options["resolution"]["choices"]] == [1, 2, 4]
    assert [c["value"] for c in options["format"]["choices"]] == ["png", "jpg", "webp"]


async def test_image_and_image2_make_one_flux2_create_in_order(multi_bot: Bot) -> None:
    bot = multi_bot
    cat = bot.discord.upload(png((200, 0, 0)), "cat.png", "image/png")
    hat = bot.discord.upload(png((0, 0, 200)), "hat.png", "image/png")
    await bot.discord.slash_command(
        "kontext",
        {"prompt": "put the hat from image 2 on the cat", "model": "flux2", "resolution": 2},
        user_id=ALICE,
        attachment=cat,
        attachments={"image2": hat},
    )
    await bot.results(1)
    (create,) = bot.provider.creates
    assert create.model == FLUX2_ID
    assert [f[0] for f in create.files] == ["file:input_images"] * 2
    assert [f[3] for f in create.files] == [png((200, 0, 0)), png((0, 0, 200))]
    assert create.input is not None and create.input["resolution"] == "2 MP"
    assert await bot.balance() == 1200 - 100


async def test_an_art_channel_reply_to_a_result_sends_the_result_then_the_attachment(
    multi_bot: Bot,
) -> None:
    bot = multi_bot
    photo = bot.discord.upload(png(), "her.png", "image/png")
    await bot.discord.post_message(
        "!kontext make it a watercolor --model flux2", user_id=ALICE, attachments=[photo]
    )
    (first,) = await bot.results(1, ART_CHANNEL_ID)
    jacket = bot.discord.upload(png((0, 120, 0)), "jacket.png", "image/png")
    await bot.discord.post_message(
        "!kontext put the jacket from image 2 on her --model flux2",
        user_id=ALICE,
        reply_to=first["id"],
        attachments=[jacket],
    )
    await bot.results(2, ART_CHANNEL_ID)
    second = bot.provider.creates[1]
    posted = bot.discord.attachment_bytes(first["attachments"][0])
    assert [f[0] for f in second.files] == ["file:input_images"] * 2
    assert second.files[0][3] == posted, "the result comes first"
    assert second.files[1][3] == png((0, 120, 0))


async def test_two_images_to_the_one_image_model_are_refused_privately_and_free(
    multi_bot: Bot,
) -> None:
    bot = multi_bot
    cat = bot.discord.upload(png(), "cat.png", "image/png")
    hat = bot.discord.upload(png((0, 0, 200)), "hat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "x"}, user_id=ALICE, attachment=cat, attachments={"image2": hat}
    )
    await bot.until(lambda: asked.callbacks)
    (answer,) = asked.callbacks
    assert answer["data"]["flags"] & 64, "ephemeral"
    assert "pro takes at most 1 image; you gave 2" in answer["data"]["content"]
    assert "--model flux2" in answer["data"]["content"]
    assert bot.provider.creates == [] and await bot.balance() == 1200


async def test_with_one_image_models_a_reply_with_an_image_edits_that_image(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """Kontext alone takes one image: a reply to a result that brings its own image
    edits that image, as before several images were possible (no refusal)."""
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            photo = discord.upload(png(), "her.png", "image/png")
            await discord.post_message("!kontext make it ink", user_id=ALICE, attachments=[photo])
            (first,) = await bot.results(1, ART_CHANNEL_ID)
            other = discord.upload(png((0, 90, 0)), "other.png", "image/png")
            await discord.post_message(
                "!kontext make it ink", user_id=ALICE, reply_to=first["id"], attachments=[other]
            )
            await bot.results(2, ART_CHANNEL_ID)
        finally:
            await adapter.stop()
            await core.close()
    second = fake.creates[1]
    assert [f[3] for f in second.files] == [png((0, 90, 0))]


# -- Cancel on the status message (issue 26) --------------------------------------------------


def _labels(message: dict[str, Any]) -> list[str]:
    return [c["label"] for row in message.get("components") or [] for c in row["components"]]


async def _status_with_cancel(bot: Bot, asked: Any) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        if asked.original_id is None:
            return None
        message = bot.discord.messages.get(CHANNEL_ID, {}).get(asked.original_id)
        return message if message and "Cancel" in _labels(message) else None

    result: dict[str, Any] = await bot.until(found)
    return result


async def _private_answer(bot: Bot, clicked: Any) -> str:
    await bot.until(lambda: clicked.callbacks)
    (answer,) = clicked.callbacks
    assert answer["data"]["flags"] & 64, "only the clicker sees it"
    return str(answer["data"]["content"])


async def test_cancel_at_the_provider_from_the_button_refunds_and_posts_nothing(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.outcome = "never"
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        discord.add_user(BOB, "bob")
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            image = discord.upload(png(), "cat.png", "image/png")
            asked = await discord.slash_command(
                "kontext", {"prompt": "make it ink"}, user_id=ALICE, attachment=image
            )
            status = await _status_with_cancel(bot, asked)
            await bot.until(lambda: fake.creates)
            stranger = await discord.click(status, "Cancel", user_id=BOB)
            refused = await _private_answer(bot, stranger)
            mine = await discord.click(status, "Cancel", user_id=ALICE)
            answered = await _private_answer(bot, mine)
            await bot.until(lambda: fake.cancels)
            (job_id,) = [j for j in fake.predictions]
            job = await _finished(core, ALICE)
            balance = await bot.balance()
        finally:
            await adapter.stop()
            await core.close()
    assert "Only the person who asked for this edit, or an admin" in refused
    assert "Asked the image service to stop" in answered
    assert job_id and job.state.value == "canceled"
    assert balance == 1200, "refunded once"
    assert fake.cancels == 1
    assert asked.original_id not in discord.messages.get(CHANNEL_ID, {}), "status removed"
    assert bot.result_messages() == []


async def test_cancel_while_queued_refunds_at_once(tmp_path: Path, fake: FakeCoreToday) -> None:
    fake.script.outcome = "never"
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        # One job at the provider at a time: the second waits in the queue.
        assert core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, max_concurrent=1))
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            first = discord.upload(png(), "a.png", "image/png")
            await discord.slash_command(
                "kontext", {"prompt": "first"}, user_id=ALICE, attachment=first
            )
            await bot.until(lambda: fake.creates)
            second = discord.upload(png(), "b.png", "image/png")
            asked = await discord.slash_command(
                "kontext", {"prompt": "second"}, user_id=ALICE, attachment=second
            )
            status = await _status_with_cancel(bot, asked)
            answered = await _private_answer(
                bot, await discord.click(status, "Cancel", user_id=ALICE)
            )
            await bot.until(lambda: asked.original_id not in discord.messages[CHANNEL_ID])
            balance = await bot.balance()
        finally:
            await adapter.stop()
            await core.close()
    assert "before it started: 120 credits refunded, 1080 left" in answered
    assert balance == 1200 - 120, "the first job is still reserved, the second refunded"
    assert len(fake.creates) == 1 and fake.cancels == 0


async def _finished(core: Any, user: str) -> Any:
    """The user's newest job, once it has finished."""
    who = UserRef("discord", GUILD_ID, user)
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while True:
            jobs = await core.service.job_history(who, who, limit=1)
            if jobs and jobs[0].state.terminal:
                return jobs[0]
            await asyncio.sleep(0.01)
