"""Several images on Discord (issue 26), through the real discord.py against the fake
Discord and the fake core.today: ``/kontext`` with ``image`` and ``image2``, the options
the configured models can use, and an art-channel reply to a result that brings one new
attachment (the result first, then the attachment)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import ART_CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.support import png
from tests.test_discord import ALICE, Bot, start_bot

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
