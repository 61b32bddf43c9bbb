"""The Discord adapter: the real discord.py against the fake Discord (REST, gateway, CDN).

The tests play Discord's users through the fake: slash commands with attachments,
button clicks, modal submissions, message context menus and art-channel messages
arrive as gateway events, and what the bot did is read back from the fake's REST
records and stored messages.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from adapters.discord.adapter import DiscordAdapter
from bot.app import Core
from bot.config import Settings
from bot.config.presets import SHIPPED_PRESETS
from bot.domain import UserRef
from bot.errors import ConfigError
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import (
    ART_CHANNEL_ID,
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MESSAGE_FLAG_EPHEMERAL,
    PRIVATE_CHANNEL_ID,
    FakeDiscord,
    Interaction,
)
from tests.support import (
    HANG_GUARD_SECONDS,
    TWO_MODELS,
    discord_core,
    environment,
    make_settings,
    png,
    run,
    start,
)

ALICE = "5000000000000000001"
BOB = "5000000000000000002"
MOD = "5000000000000000003"


@dataclass
class Bot:
    core: Core
    adapter: DiscordAdapter
    discord: FakeDiscord
    provider: FakeCoreToday
    settings: Settings

    async def until(self, check: Callable[[], Any], timeout: float = HANG_GUARD_SECONDS) -> Any:
        async with asyncio.timeout(timeout):
            while not (value := check()):
                await asyncio.sleep(0.02)
        return value

    def result_messages(self, channel: str = CHANNEL_ID) -> list[dict[str, Any]]:
        return [
            m
            for m in self.discord.channel_messages(channel)
            if m["author"]["id"] != ALICE and m["attachments"] and m["components"]
        ]

    def first_answer(self, channel: str) -> dict[str, Any] | None:
        """The bot's first message in ``channel`` (an art channel's answer), if any."""
        mine = [m for m in self.discord.channel_messages(channel) if m["author"]["bot"]]
        return mine[0] if mine else None

    async def results(self, count: int, channel: str = CHANNEL_ID) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.result_messages(channel)) >= count)
        return self.result_messages(channel)

    async def edited(self, prompt: str = "make it a watercolor") -> dict[str, Any]:
        """Alice's /kontext with an image, to its posted result."""
        image = self.discord.upload(png(), "cat.png", "image/png")
        await self.discord.slash_command(
            "kontext", {"prompt": prompt}, user_id=ALICE, attachment=image
        )
        (result,) = await self.results(1)
        return result

    async def balance(self, user: str = ALICE) -> int:
        return (await self.core.service.credits(UserRef("discord", GUILD_ID, user))).balance


def assert_refused_privately(discord: FakeDiscord, asked: Interaction, words: str) -> None:
    """The refusal was the interaction's one initial response, ephemeral, and nothing
    of this interaction was ever public (not even briefly, not even edited away)."""
    (callback,) = asked.callbacks
    assert callback["type"] == 4, "answered with the refusal, not a deferral"
    assert callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert words in callback["data"]["content"]
    public = [m for m in discord.ever_public(asked.channel_id) if m["id"] == asked.original_id]
    assert public == [], public
    assert asked.original_id in {m["id"] for m in discord.ephemeral_messages(asked.channel_id)}


def _field(message: dict[str, Any], name: str) -> str:
    (embed,) = message["embeds"]
    return str(next(f["value"] for f in embed["fields"] if f["name"] == name))


async def start_bot(
    tmp_path: Path, fake: FakeCoreToday, discord: FakeDiscord, **sections: dict[str, Any]
) -> tuple[Core, DiscordAdapter, Settings]:
    discord_section = {
        "enabled": True,
        "token": BOT_TOKEN,
        "api_base_url": discord.api_url,
        "guild_ids": [int(GUILD_ID)],
        "channels": [int(ART_CHANNEL_ID)],
        "progress_interval_seconds": 0.2,
        **sections.pop("discord", {}),
    }
    settings = make_settings(
        tmp_path,
        fake.base_url,
        discord=discord_section,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05, **sections.pop("jobs", {})},
        **sections,
    )

    core, adapter = await discord_core(settings)
    assert core.runner is not None
    core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
    await core.start()
    await adapter.start()
    return core, adapter, settings


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord() as discord:
        for user, name in ((ALICE, "alice"), (BOB, "bob"), (MOD, "mod")):
            discord.add_user(user, name)
        discord.permissions[MOD] = MANAGE_GUILD
        core, adapter, settings = await start_bot(
            tmp_path, fake, discord, credits={"platform_admins": True}
        )
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


async def test_login_identifies_and_syncs_commands_to_the_guild(bot: Bot) -> None:
    identify = bot.discord.identifies[0]
    assert identify["token"] == BOT_TOKEN
    assert identify["intents"] & (1 << 15), "art channels configured: message content asked"
    names = {c["name"] for c in bot.discord.commands[GUILD_ID]}
    assert names == {
        "kontext",
        "kontext-credits",
        "kontext-history",
        "kontext-help",
        "kontext-admin",
        "Edit with Kontext",
    }
    kontext = next(c for c in bot.discord.commands[GUILD_ID] if c["name"] == "kontext")
    types = {o["name"]: o["type"] for o in kontext["options"]}
    assert types == {
        "prompt": 3,
        "image": 11,
        "aspect_ratio": 3,
        "seed": 4,
        "format": 3,
        "upsample": 5,
        "preset": 3,
        "count": 4,  # variations (issue 27)
    }
    # A preset may be the whole request: the prompt is optional; the presets are choices.
    options = {o["name"]: o for o in kontext["options"]}
    assert not options["prompt"].get("required")
    assert [c["value"] for c in options["preset"]["choices"]][:3] == [
        "zoom-out",
        "make-square",
        "vary-subtle",
    ]
    assert await bot.adapter.ready()


async def test_slash_command_with_image_acknowledges_and_posts_the_result_with_buttons(
    bot: Bot,
) -> None:
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext",
        {"prompt": "make it a watercolor", "seed": 42},
        user_id=ALICE,
        attachment=image,
    )
    (result,) = await bot.results(1)
    # The acknowledgement is the initial response itself (issue 24): no deferral to edit.
    assert [c["type"] for c in asked.callbacks] == [4], "answered at once, public"
    assert "Queued (position" in asked.callbacks[0]["data"]["content"]
    assert not asked.callbacks[0].get("data", {}).get("flags", 0) & MESSAGE_FLAG_EPHEMERAL
    assert result["id"] == asked.original_id, "the acknowledgement became the result"
    assert result["content"] == f"<@{ALICE}>"
    (embed,) = result["embeds"]
    assert embed["description"] == "make it a watercolor"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "42"
    assert fields["Credits"] == "120 used · 1080 left"
    assert embed["image"]["url"] == f"attachment://{result['attachments'][0]['filename']}"
    rows = [
        [c.get("label") or c.get("placeholder") for c in r["components"]]
        for r in result["components"]
    ]
    # [results] buttons' default (Upscale left out: no upscale model), 5 to a row, and the
    # More… select on a row of its own.
    assert rows == [
        ["Re-roll", "Edit again", "Vary (subtle)", "Zoom out", "Make square"],
        ["Delete"],
        ["More…"],
    ]
    output = bot.discord.attachment_bytes(result["attachments"][0])
    assert Image.open(io.BytesIO(output)).convert("RGB").getpixel((0, 0)) == tuple(
        bot.provider.output_color
    )
    (created,) = bot.provider.creates
    assert created.input is not None
    assert created.input["prompt"] == "make it a watercolor"
    assert created.input["seed"] == 42
    assert created.file_bytes is not None, "the attachment went to the provider"
    assert image["id"] in bot.discord.cdn_requests
    assert await bot.balance() == 1080


async def test_reroll_and_edit_again_chain_from_the_result_buttons(bot: Bot) -> None:
    first = await bot.edited()

    # Re-roll: Bob clicks, Bob pays; same prompt and input, a new seed.
    reroll = await bot.discord.click(first, "Re-roll", user_id=BOB)
    await bot.results(2)
    assert [c["type"] for c in reroll.callbacks] == [4]  # acknowledged in the answer
    creates = bot.provider.creates
    assert len(creates) == 2
    assert creates[1].input is not None and creates[0].input is not None
    assert creates[1].input["prompt"] == "make it a watercolor"
    assert creates[1].file_bytes == creates[0].file_bytes, "same input image"
    assert isinstance(creates[1].input["seed"], int)
    # The bot picked the first seed (none was given) and shows both: a re-roll differs.
    second = next(m for m in bot.result_messages() if m["id"] != first["id"])
    seeds = [_field(m, "Seed") for m in (first, second)]
    assert all(seed.isdigit() for seed in seeds), seeds
    assert seeds[0] != seeds[1]
    assert [int(seed) for seed in seeds] == [c.input["seed"] for c in creates]

    assert await bot.balance(ALICE) == 1080

    # Edit again: a modal asks for the prompt; the result is the next input.
    again = await bot.discord.click(first, "Edit again", user_id=ALICE)
    await bot.until(lambda: again.modal)
    assert again.modal is not None and again.modal["title"] == "Edit again"
    submitted = await bot.discord.submit_modal(
        again, {"prompt": "now make her wave --ar 16:9"}, user_id=ALICE
    )
    results = await bot.results(3)
    assert [c["type"] for c in submitted.callbacks] == [4]  # acknowledged in the answer
    third = next(m for m in results if m["id"] == submitted.original_id)
    assert third["embeds"][0]["description"] == "now make her wave"
    creates = bot.provider.creates
    assert creates[2].input is not None and creates[2].input["aspect_ratio"] == "16:9"
    result_bytes = bot.discord.attachment_bytes(first["attachments"][0])
    assert creates[2].file_bytes is not None
    assert (
        Image.open(io.BytesIO(creates[2].file_bytes)).size
        == Image.open(io.BytesIO(result_bytes)).size
    ), "the first result was the input of the third edit"
    assert await bot.balance(ALICE) == 960


async def test_context_menu_edits_the_image_of_any_message(bot: Bot) -> None:
    photo = bot.discord.upload(png((10, 200, 10)), "product.png", "image/png")
    message = await bot.discord.post_message(
        "our new product", user_id=BOB, channel_id=CHANNEL_ID, attachments=[photo]
    )
    menu = await bot.discord.context_menu("Edit with Kontext", message, user_id=ALICE)
    await bot.until(lambda: menu.modal)
    submitted = await bot.discord.submit_modal(
        menu, {"prompt": "replace the background with a beach"}, user_id=ALICE
    )
    (result,) = await bot.results(1)
    assert result["id"] == submitted.original_id
    assert photo["id"] in bot.discord.cdn_requests
    (created,) = bot.provider.creates
    assert created.input is not None
    assert created.input["prompt"] == "replace the background with a beach"


async def test_context_menu_on_a_message_without_image_says_so_privately(bot: Bot) -> None:
    message = await bot.discord.post_message("just text", user_id=BOB, channel_id=CHANNEL_ID)
    menu = await bot.discord.context_menu("Edit with Kontext", message, user_id=ALICE)
    await bot.until(lambda: menu.callbacks)
    (callback,) = menu.callbacks
    assert callback["type"] == 4
    assert callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "no image" in callback["data"]["content"]


async def test_art_channel_reply_chain_of_three_edits(bot: Bot) -> None:
    photo = bot.discord.upload(png(), "her.png", "image/png")
    await bot.discord.post_message(
        "!kontext make it a watercolor --ar 4:3", user_id=ALICE, attachments=[photo]
    )
    (first,) = await bot.results(1, ART_CHANNEL_ID)
    assert first["message_reference"] is not None, "answers as a reply"
    await bot.discord.post_message(
        "now make her wave", user_id=ALICE, reply_to=first["id"], mention_bot=True
    )
    await bot.results(2, ART_CHANNEL_ID)
    second = bot.result_messages(ART_CHANNEL_ID)[1]
    await bot.discord.post_message(
        "/kontext add a red hat --seed 7", user_id=ALICE, reply_to=second["id"]
    )
    await bot.results(3, ART_CHANNEL_ID)
    creates = bot.provider.creates
    assert [c.input["prompt"] for c in creates if c.input] == [
        "make it a watercolor",
        "now make her wave",
        "add a red hat",
    ]
    assert creates[0].input is not None and creates[0].input["aspect_ratio"] == "4:3"
    assert creates[2].input is not None and creates[2].input["seed"] == 7
    # Each later edit took the previous result (what the bot posted) as its input.
    for earlier, later in ((first, creates[1]), (second, creates[2])):
        posted = bot.discord.attachment_bytes(earlier["attachments"][0])
        assert later.file_bytes is not None
        assert Image.open(io.BytesIO(later.file_bytes)).size == Image.open(io.BytesIO(posted)).size
    assert await bot.balance() == 1200 - 3 * 120


async def test_art_channel_ignores_chatter_and_other_channels(bot: Bot) -> None:
    photo = bot.discord.upload(png(), "her.png", "image/png")
    await bot.discord.post_message("nice picture", user_id=ALICE, attachments=[photo])
    await bot.discord.post_message(
        "!kontext make it blue", user_id=ALICE, channel_id=CHANNEL_ID, attachments=[photo]
    )
    # A message that is a request, sent last, is answered: the two above were not.
    await bot.discord.post_message("!kontext make it red", user_id=ALICE, attachments=[photo])
    await bot.results(1, ART_CHANNEL_ID)
    assert [c.input["prompt"] for c in bot.provider.creates if c.input] == ["make it red"]
    assert bot.discord.channel_messages(CHANNEL_ID)[-1]["author"]["id"] == ALICE


async def test_art_channel_mistake_is_answered_and_costs_nothing(bot: Bot) -> None:
    photo = bot.discord.upload(png(), "her.png", "image/png")
    await bot.discord.post_message(
        "!kontext make it blue --ar 7:3", user_id=ALICE, attachments=[photo]
    )
    message = await bot.until(lambda: bot.first_answer(ART_CHANNEL_ID))
    assert "'7:3' is not an aspect ratio" in message["content"]
    assert bot.provider.creates == []
    assert await bot.balance() == 1200


async def test_quota_refusal_is_ephemeral_and_nothing_is_submitted(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(
            tmp_path, fake, discord, credits={"allowance": 120}
        )
        try:
            image = discord.upload(png(), "cat.png", "image/png")
            await discord.slash_command(
                "kontext", {"prompt": "one"}, user_id=ALICE, attachment=image
            )
            bot = Bot(core, adapter, discord, fake, settings)
            await bot.results(1)
            refused = await discord.slash_command(
                "kontext", {"prompt": "two"}, user_id=ALICE, attachment=image
            )

            await bot.until(lambda: refused.callbacks)
            assert_refused_privately(discord, refused, "credits")
            assert len(fake.creates) == 1
            assert await bot.balance() == 0
        finally:
            await adapter.stop()
            await core.close()


async def test_bad_attachment_is_refused_at_once_and_privately(bot: Bot) -> None:
    text_file = bot.discord.upload(b"hello", "notes.txt", "text/plain")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=text_file
    )
    await bot.until(lambda: asked.callbacks)
    (callback,) = asked.callbacks
    assert callback["type"] == 4, "answered at once, not deferred"
    assert callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "notes.txt" in callback["data"]["content"]
    assert "not an image" in callback["data"]["content"]
    assert text_file["id"] not in bot.discord.cdn_requests, "not even downloaded"
    assert bot.provider.creates == []
    assert await bot.balance() == 1200


async def test_oversized_attachment_is_refused_before_download(bot: Bot) -> None:
    big = bot.discord.upload(png(), "huge.png", "image/png")
    big["size"] = 50_000_000  # what Discord declares
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=big
    )
    await bot.until(lambda: asked.callbacks)
    assert asked.callbacks[0]["type"] == 4
    assert "50.0 MB" in asked.callbacks[0]["data"]["content"]
    assert big["id"] not in bot.discord.cdn_requests


async def test_credits_and_help_commands_answer_privately(bot: Bot) -> None:
    credits = await bot.discord.slash_command("kontext-credits", user_id=ALICE)
    helped = await bot.discord.slash_command("kontext-help", user_id=ALICE)
    await bot.until(lambda: credits.callbacks and helped.callbacks)
    text = credits.callbacks[0]["data"]["content"]
    assert "**1200 credits**: 10 images at 120 each" in text
    assert "<t:" in text, "the next allowance as a Discord timestamp"
    assert credits.callbacks[0]["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "Re-roll" in helped.callbacks[0]["data"]["content"]


async def test_delete_button_only_for_requester_or_admin(bot: Bot) -> None:
    result = await bot.edited()
    refused = await bot.discord.click(result, "Delete", user_id=BOB)
    await bot.until(lambda: refused.callbacks)
    assert refused.callbacks[0]["type"] == 4
    assert "Only the person who asked" in refused.callbacks[0]["data"]["content"]
    assert result["id"] in {m["id"] for m in bot.discord.channel_messages(CHANNEL_ID)}

    by_mod = await bot.discord.click(result, "Delete", user_id=MOD)  # Manage Server
    await bot.until(lambda: by_mod.callbacks)
    assert by_mod.callbacks[0]["type"] == 6
    await bot.until(
        lambda: result["id"] not in {m["id"] for m in bot.discord.channel_messages(CHANNEL_ID)}
    )


async def test_admin_commands_grant_history_and_top(bot: Bot) -> None:
    refused = await bot.discord.subcommand(
        "kontext-admin", "grant", {"user": BOB, "amount": 600}, user_id=ALICE
    )
    granted = await bot.discord.subcommand(
        "kontext-admin", "grant", {"user": BOB, "amount": 600}, user_id=MOD
    )
    await bot.until(lambda: refused.callbacks and granted.callbacks)
    assert "Only the bot's admins" in refused.callbacks[0]["data"]["content"]
    assert granted.callbacks[0]["data"]["content"] == f"<@{BOB}> now has 1800 credits."
    ledger = await bot.discord.subcommand("kontext-admin", "ledger", {"user": BOB}, user_id=MOD)
    await bot.until(lambda: ledger.callbacks)
    text = ledger.callbacks[0]["data"]["content"]
    assert f"granted by discord:{GUILD_ID}:{MOD}" in text
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command("kontext", {"prompt": "x y"}, user_id=ALICE, attachment=image)
    await bot.results(1)
    top = await bot.discord.subcommand("kontext-admin", "top", {}, user_id=MOD)
    await bot.until(lambda: top.callbacks)
    assert f"1. <@{ALICE}> 120" in top.callbacks[0]["data"]["content"]


async def test_restart_with_a_job_in_flight_then_a_button_clicked_after_it(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        discord.add_user(BOB, "bob")
        fake.script.polls_before_done = 100_000  # still processing when the process stops
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        image = discord.upload(png(), "cat.png", "image/png")
        asked = await discord.slash_command(
            "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
        )
        bot = Bot(core, adapter, discord, fake, settings)
        await bot.until(lambda: fake.creates)
        await adapter.stop()
        await core.close(grace=0)
        syncs = len(discord.calls_to("PUT", "/applications/"))

        for prediction in fake.predictions.values():
            prediction.polls_left = 0  # finishes while the bot is down
        fake.script.polls_before_done = 1
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            (result,) = await bot.results(1)
            assert result["id"] == asked.original_id, "delivered into the same message"
            assert len(fake.creates) == 1, "polled after the restart, not submitted again"
            assert len(discord.calls_to("PUT", "/applications/")) == syncs == 1, (
                "same commands: not synced again"
            )
            reroll = await discord.click(result, "Re-roll", user_id=BOB)
            await bot.results(2)
            assert [c["type"] for c in reroll.callbacks] == [4]  # acknowledged in the answer
            assert len(fake.creates) == 2
            assert await bot.balance(ALICE) == 1080
            # A preset's button and the More… select, made before the restart, work
            # after it (their custom ids carry the preset and the job).
            await discord.click(result, "Zoom out", user_id=BOB)
            await discord.choose(result, "More…", "colorize", user_id=BOB)
            await bot.results(4)
            prompts = [c.input["prompt"] for c in fake.creates[2:] if c.input is not None]
            assert sorted(p.split()[0] for p in prompts) == ["Colorize", "Zoom"]
            assert all(
                c.file_bytes == discord.attachment_bytes(result["attachments"][0])
                for c in fake.creates[2:]
            )
            # The resumed delivery recorded where the result is (issue 19).
            key = f"discord:{GUILD_ID}:interaction:{asked.id}"
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                while (job := await core.store.by_idempotency_key(key)) is None or (
                    not job.state.terminal
                ):
                    await asyncio.sleep(0.02)
            assert job.delivered is not None and job.delivered["message"] == result["id"]

        finally:
            await adapter.stop()
            await core.close()


async def test_a_job_that_outlives_the_interaction_token_is_posted_in_the_channel(
    bot: Bot,
) -> None:
    bot.provider.script.polls_before_done = 100_000
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: bot.provider.predictions)
    bot.discord.expire(asked.token)  # 15 minutes later
    for prediction in bot.provider.predictions.values():
        prediction.polls_left = 0
    (result,) = await bot.results(1)
    assert result["id"] != asked.original_id
    assert result["content"] == f"<@{ALICE}>"
    posted = bot.discord.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")
    assert len(posted) == 1 and posted[0].files, "a channel message with the file"
    assert await bot.balance() == 1080, "delivered, so charged once"
    # History links to the message the result ended up in (issue 19).
    key = f"discord:{GUILD_ID}:interaction:{asked.id}"
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while (
            job := await bot.core.store.by_idempotency_key(key)
        ) is None or not job.state.terminal:
            await asyncio.sleep(0.02)
    assert job.delivered is not None and job.delivered["link"] == _jump(result)
    assert job.delivered["image"]["name"] == result["attachments"][0]["filename"]


async def test_progress_edits_are_throttled_and_rate_limits_are_survived(bot: Bot) -> None:
    bot.provider.script.polls_before_done = 30
    bot.discord.rate_limits["PATCH /webhooks/"] = 1  # the first edit meets a 429
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
    )
    await bot.results(1)
    edits = bot.discord.calls_to("PATCH", "/webhooks/")
    assert bot.discord.rate_limits["PATCH /webhooks/"] == 0, "the 429 was met"
    assert any(c.files for c in edits), "the result arrived despite the 429"
    status_edits = [c for c in edits if not c.files]
    # queued + editing within 0.2 s coalesce: at most one status edit per interval.
    assert 1 <= len(status_edits) <= 3, [c.json for c in status_edits]
    assert asked.original_id is not None


async def test_missing_message_content_intent_stops_start_with_a_clear_message(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord(message_content_allowed=False) as discord:
        with pytest.raises(ConfigError, match="Message Content intent"):
            await start_bot(tmp_path, fake, discord)


def discord_environment(
    tmp_path: Path, fake: FakeCoreToday, discord: FakeDiscord
) -> dict[str, str]:
    """``kontext-bot run`` as a process, with Discord pointed at the fake."""
    return environment(
        tmp_path,
        fake,
        KONTEXT_DISCORD__ENABLED="true",
        KONTEXT_DISCORD__TOKEN=BOT_TOKEN,
        KONTEXT_DISCORD__API_BASE_URL=discord.api_url,
    )


async def test_run_serves_discord_and_refuses_a_wrong_token_clearly(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord(token="not-the-configured-token") as discord:
        env = discord_environment(tmp_path, fake, discord)
        result = await run(["run"], env, tmp_path)
    assert result.code == 3
    assert "an adapter could not start" in result.stderr
    assert "LoginFailure" in result.stderr
    assert BOT_TOKEN not in result.stderr and "Traceback" not in result.stderr


async def test_run_as_a_process_serves_discord_and_stops_on_sigterm(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        env = discord_environment(tmp_path, fake, discord)
        process = await start(["run"], env, tmp_path)
        try:
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                await discord.connected.wait()
            assert "global" in discord.commands, "no guild_ids: synced globally"
            image = discord.upload(png(), "cat.png", "image/png")
            await discord.slash_command(
                "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
            )
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                while not any(m["attachments"] for m in discord.channel_messages(CHANNEL_ID)):
                    await asyncio.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), timeout=HANG_GUARD_SECONDS)
    assert process.returncode == 0, err.decode()
    assert BOT_TOKEN not in err.decode()


async def test_admin_role_allowance_and_pause_from_discord(bot: Bot) -> None:
    supporters = "6000000000000000001"
    await bot.discord.add_role(supporters, "Supporters")
    bot.discord.member_roles[ALICE] = [supporters]
    role_set = await bot.discord.subcommand(
        "kontext-admin",
        "allowance",
        {"amount": 50_000, "period": "monthly", "role": supporters},
        user_id=MOD,
    )
    await bot.until(lambda: role_set.callbacks)
    assert role_set.callbacks[0]["data"]["content"] == (
        f"Allowance for <@&{supporters}>: 50000 credits monthly."
    )
    credits = await bot.discord.slash_command("kontext-credits", user_id=ALICE)
    others = await bot.discord.slash_command("kontext-credits", user_id=BOB)
    await bot.until(lambda: credits.callbacks and others.callbacks)
    assert "**50000 credits**" in credits.callbacks[0]["data"]["content"]
    assert "**1200 credits**" in others.callbacks[0]["data"]["content"]

    paused = await bot.discord.subcommand("kontext-admin", "pause", {}, user_id=MOD)
    await bot.until(lambda: paused.callbacks)
    assert "paused" in paused.callbacks[0]["data"]["content"]
    image = bot.discord.upload(png(), "cat.png", "image/png")
    refused = await bot.discord.slash_command(
        "kontext", {"prompt": "make it blue"}, user_id=BOB, attachment=image
    )

    await bot.until(lambda: refused.callbacks)
    assert_refused_privately(bot.discord, refused, "An admin has paused")
    assert bot.provider.creates == []
    resumed = await bot.discord.subcommand("kontext-admin", "resume", {}, user_id=MOD)
    await bot.until(lambda: resumed.callbacks)
    await bot.discord.slash_command(
        "kontext", {"prompt": "make it blue"}, user_id=BOB, attachment=image
    )
    await bot.results(1)

    entries = await bot.core.service.history(UserRef("discord", GUILD_ID, BOB))
    assert await bot.balance(BOB) == 1080, [(e.kind.value, e.amount, e.job_id) for e in entries]


async def test_a_result_larger_than_the_upload_limit_is_reencoded_to_fit(bot: Bot) -> None:
    bot.provider.script.output_size = (1200, 900)
    bot.provider.script.noisy_output = True  # about 3 MB as PNG
    image = bot.discord.upload(png(), "cat.png", "image/png")
    original = bot.discord._interaction  # the limit comes with each interaction

    def small_limit(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = original(*args, **kwargs)
        payload["attachment_size_limit"] = 80 * 1024
        return payload

    bot.discord._interaction = small_limit  # type: ignore[method-assign]
    await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
    )
    (result,) = await bot.results(1)
    posted = bot.discord.attachment_bytes(result["attachments"][0])
    assert len(posted) <= 80 * 1024
    assert Image.open(io.BytesIO(posted)).format == "JPEG"
    assert result["attachments"][0]["filename"].endswith(".jpg")


async def test_bad_option_combination_is_answered_privately(bot: Bot) -> None:
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "a cat", "aspect_ratio": "match_input_image"}, user_id=ALICE
    )
    await bot.until(lambda: asked.callbacks)
    (callback,) = asked.callbacks
    assert callback["type"] == 4 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "needs an input image" in callback["data"]["content"]
    assert bot.provider.creates == []


class Gate:
    """Holds every reservation until ``open``: the slow path, deterministically."""

    def __init__(self, bot: Bot) -> None:
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()
        service = bot.core.service
        submit = service.submit

        async def gated(request: Any) -> Any:
            self.waiting.set()
            await self.opened.wait()
            return await submit(request)

        service.submit = gated  # type: ignore[method-assign]
        bot.adapter.reservation_budget = 0.0

    def open(self) -> None:
        self.opened.set()


async def test_slow_reservation_defers_privately_then_refuses_privately(bot: Bot) -> None:
    paused = await bot.discord.subcommand("kontext-admin", "pause", {}, user_id=MOD)
    await bot.until(lambda: paused.callbacks)
    gate = Gate(bot)
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it blue"}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: asked.callbacks)
    (callback,) = asked.callbacks
    assert callback["type"] == 5 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    gate.open()

    def refusal() -> dict[str, Any] | None:
        mine = bot.discord.ephemeral_messages(CHANNEL_ID, ALICE)
        return next((m for m in mine if "An admin has paused" in m["content"]), None)

    notice = await bot.until(refusal)
    assert notice["id"] == asked.original_id, "the private loading message became the refusal"
    assert [m for m in bot.discord.ever_public(CHANNEL_ID) if m["author"]["bot"]] == []
    assert bot.provider.creates == []
    assert await bot.balance() == 1200


async def test_slow_reservation_queues_privately_and_posts_the_result_publicly(bot: Bot) -> None:
    gate = Gate(bot)
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it blue"}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: asked.callbacks)
    assert asked.callbacks[0]["type"] == 5
    assert asked.callbacks[0]["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    gate.open()
    (result,) = await bot.results(1)
    assert result["id"] != asked.original_id, "a new public follow-up, not the private status"
    assert not bot.discord.is_ephemeral(result)
    assert result["content"] == f"<@{ALICE}>"
    queued = [
        e.message
        for e in bot.discord.message_log
        if e.message["id"] == asked.original_id and "Queued" in e.message["content"]
    ]
    assert queued and all(bot.discord.is_ephemeral(m) for m in queued), "queued, privately"
    public_bot = [m for m in bot.discord.ever_public(CHANNEL_ID) if m["author"]["bot"]]
    assert {m["id"] for m in public_bot} == {result["id"]}, "only the result was ever public"
    assert await bot.balance() == 1080


async def test_delete_works_in_a_channel_the_bot_cannot_see(bot: Bot) -> None:
    bot.discord.hidden_channels.add(PRIVATE_CHANNEL_ID)
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command(
        "kontext",
        {"prompt": "make it blue"},
        user_id=ALICE,
        attachment=image,
        channel_id=PRIVATE_CHANNEL_ID,
    )
    (result,) = await bot.results(1, PRIVATE_CHANNEL_ID)
    deleted = await bot.discord.click(result, "Delete", user_id=ALICE)
    await bot.until(
        lambda: (
            result["id"] not in {m["id"] for m in bot.discord.channel_messages(PRIVATE_CHANNEL_ID)}
        )
    )
    assert [c["type"] for c in deleted.callbacks] == [6], "a deferred update, then @original"
    assert bot.discord.refusals(50001) == [], "nothing went through the bot token"


async def test_a_late_result_in_a_hidden_channel_is_refunded_and_told_by_dm(bot: Bot) -> None:
    bot.discord.hidden_channels.add(PRIVATE_CHANNEL_ID)
    bot.provider.script.polls_before_done = 100_000
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext",
        {"prompt": "make it blue"},
        user_id=ALICE,
        attachment=image,
        channel_id=PRIVATE_CHANNEL_ID,
    )
    await bot.until(lambda: bot.provider.predictions)
    bot.discord.expire(asked.token)  # 15 minutes later
    for prediction in bot.provider.predictions.values():
        prediction.polls_left = 0

    def dm() -> list[dict[str, Any]]:
        channel = bot.discord.dm_channels.get(ALICE)
        return bot.discord.channel_messages(channel) if channel else []

    (notice,) = await bot.until(dm)
    assert "can't post" in notice["content"] and "refunded" in notice["content"]
    assert await bot.balance() == 1200, "refunded"
    posts = bot.discord.calls_to("POST", f"/channels/{PRIVATE_CHANNEL_ID}/messages")
    assert len(posts) == 2, "one delivery and one notice: a 403 is not retried"


async def test_prompt_credits_answers_privately_and_charges_nothing(bot: Bot) -> None:
    asked = await bot.discord.slash_command("kontext", {"prompt": "credits"}, user_id=ALICE)
    await bot.until(lambda: asked.callbacks)
    (callback,) = asked.callbacks
    assert callback["type"] == 4 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "**1200 credits**" in callback["data"]["content"]
    assert bot.provider.creates == []
    assert await bot.balance() == 1200


async def test_help_names_only_discord_commands(bot: Bot) -> None:
    helped = await bot.discord.slash_command("kontext-help", user_id=ALICE)
    await bot.until(lambda: helped.callbacks)
    text = helped.callbacks[0]["data"]["content"]
    assert "/kontext-credits" in text and "/kontext-admin" in text and "/kontext-history" in text
    for slack_syntax in (
        "/kontext credits",
        "/kontext help",
        "/kontext grant",
        "/kontext history",
        "--model",
    ):
        assert slack_syntax not in text


async def test_art_channel_message_with_only_a_text_file_is_refused(bot: Bot) -> None:
    notes = bot.discord.upload(b"hello", "notes.txt", "text/plain")
    await bot.discord.post_message("!kontext make it blue", user_id=ALICE, attachments=[notes])
    message = await bot.until(lambda: bot.first_answer(ART_CHANNEL_ID))
    assert "notes.txt" in message["content"] and "not an image" in message["content"]
    assert "Queued" not in "".join(m["content"] for m in bot.discord.ever_public(ART_CHANNEL_ID))
    assert notes["id"] not in bot.discord.cdn_requests
    assert bot.provider.creates == []
    assert await bot.balance() == 1200


async def test_art_channel_quota_refusal_leaves_no_queued_message(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord, credits={"allowance": 0})
        try:
            photo = discord.upload(png(), "her.png", "image/png")
            await discord.post_message("!kontext make it blue", user_id=ALICE, attachments=[photo])
            bot = Bot(core, adapter, discord, fake, settings)
            (refusal,) = await bot.until(
                lambda: [m for m in discord.channel_messages(ART_CHANNEL_ID) if m["author"]["bot"]]
            )
            assert "credits" in refusal["content"].lower()
            assert all("Queued" not in m["content"] for m in discord.ever_public(ART_CHANNEL_ID))
            assert fake.creates == []
        finally:
            await adapter.stop()
            await core.close()


async def test_context_menu_on_a_message_with_only_a_pdf_names_it(bot: Bot) -> None:
    pdf = bot.discord.upload(b"%PDF-1.4", "brief.pdf", "application/pdf")
    message = await bot.discord.post_message(
        "the brief", user_id=BOB, channel_id=CHANNEL_ID, attachments=[pdf]
    )
    menu = await bot.discord.context_menu("Edit with Kontext", message, user_id=ALICE)
    await bot.until(lambda: menu.callbacks)
    (callback,) = menu.callbacks
    assert callback["type"] == 4 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    assert "brief.pdf" in callback["data"]["content"]
    assert bot.provider.creates == []


async def test_no_message_of_the_bot_pings_anyone_but_the_requester(bot: Bot) -> None:
    role = "6000000000000000009"
    await bot.discord.add_role(role, "Everyone-ish")
    prompt = f"make @everyone and <@{BOB}> and <@&{role}> wear hats"
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command("kontext", {"prompt": prompt}, user_id=ALICE, attachment=image)
    await bot.results(1)
    photo = bot.discord.upload(png(), "her.png", "image/png")
    await bot.discord.post_message(f"!kontext {prompt}", user_id=ALICE, attachments=[photo])
    await bot.results(1, ART_CHANNEL_ID)
    events = bot.discord.bot_events()
    assert any(prompt in e.message["content"] for e in events), "the prompt was echoed"
    for event in events:
        assert bot.discord.pingable(event) <= {f"user:{ALICE}"}, (
            event.message["content"],
            event.allowed_mentions,
        )


# -- named models ([[models]]) ------------------------------------------------------------

SUPPORTERS = "6000000000000000009"
MAX_ID = "black-forest-labs/flux-kontext-max"


@pytest.fixture
async def models_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    """pro (default, 120), max (240) and ultra (300, only for the Supporters role)."""
    async with FakeDiscord() as discord:
        for user, name in ((ALICE, "alice"), (BOB, "bob"), (MOD, "mod")):
            discord.add_user(user, name)
        discord.permissions[MOD] = MANAGE_GUILD
        ultra = {"name": "ultra", "model": MAX_ID, "cost_per_image": 300, "restricted": True}
        core, adapter, settings = await start_bot(
            tmp_path,
            fake,
            discord,
            models=[*TWO_MODELS, ultra],
            credits={
                "platform_admins": True,
                "overrides": [
                    {"scope": f"role:discord:{GUILD_ID}:{SUPPORTERS}", "models": ["ultra"]}
                ],
            },
        )
        await discord.add_role(SUPPORTERS, "Supporters")
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


async def test_more_models_than_discord_lists_syncs_without_choices_and_typed_names_work(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """Discord lists at most 25 choices and refuses a command with more; with 26 models
    the option stays, without choices, and the typed name is checked by the bot."""
    many = [
        {"name": f"m{i}", "model": MAX_ID, "cost_per_image": 10 + i, "default": i == 0}
        for i in range(26)
    ]
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord, models=many)
        bot = Bot(core, adapter, discord, fake, settings)
        try:
            kontext = next(c for c in discord.commands[GUILD_ID] if c["name"] == "kontext")
            option = next(o for o in kontext["options"] if o["name"] == "model")
            assert not option.get("choices")
            image = discord.upload(png(), "cat.png", "image/png")
            asked = {"prompt": "make it ink", "model": "m20"}
            await discord.slash_command("kontext", asked, user_id=ALICE, attachment=image)
            await bot.results(1)
            assert await bot.balance(ALICE) == 1200 - 30
        finally:
            await adapter.stop()
            await core.close()


def modal_select(interaction: Interaction) -> dict[str, Any]:
    assert interaction.modal is not None
    return next(
        row["component"]
        for row in interaction.modal["components"]
        if row.get("type") == 18 and row["component"].get("type") == 3
    )


async def test_max_from_the_model_option_charges_max_and_reroll_and_edit_again_keep_it(
    models_bot: Bot,
) -> None:
    bot = models_bot
    kontext = next(c for c in bot.discord.commands[GUILD_ID] if c["name"] == "kontext")
    option = next(o for o in kontext["options"] if o["name"] == "model")
    assert [c["value"] for c in option["choices"]] == ["pro", "max", "ultra"]
    assert option["choices"][1]["name"] == "max · 240 credits"

    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command(
        "kontext",
        {"prompt": "make it a watercolor", "model": "max"},
        user_id=ALICE,
        attachment=image,
    )
    (first,) = await bot.results(1)
    assert bot.provider.creates[0].model == MAX_ID
    assert _field(first, "Credits") == "240 used · 960 left"
    assert await bot.balance(ALICE) == 960

    # Re-roll of a max result: Bob pays max, the provider is asked for max.
    await bot.discord.click(first, "Re-roll", user_id=BOB)
    await bot.results(2)
    assert bot.provider.creates[1].model == MAX_ID
    assert await bot.balance(BOB) == 960

    # Edit again: the model select comes preselected with the result's model.
    again = await bot.discord.click(first, "Edit again", user_id=ALICE)
    await bot.until(lambda: again.modal)
    select = modal_select(again)
    assert [o["value"] for o in select["options"]] == ["pro", "max", "ultra"]
    assert [o["value"] for o in select["options"] if o.get("default")] == ["max"]
    await bot.discord.submit_modal(again, {"prompt": "now make her wave"}, user_id=ALICE)
    await bot.results(3)
    assert bot.provider.creates[2].model == MAX_ID
    assert await bot.balance(ALICE) == 720

    # The select chooses another model for the next edit.
    again = await bot.discord.click(first, "Edit again", user_id=ALICE)
    await bot.until(lambda: again.modal)
    await bot.discord.submit_modal(again, {"prompt": "smaller", "model": "pro"}, user_id=ALICE)
    await bot.results(4)
    assert bot.provider.creates[3].model == "black-forest-labs/flux-kontext-pro"
    assert await bot.balance(ALICE) == 600


async def test_a_restricted_model_is_refused_outside_its_role_and_taken_inside(
    models_bot: Bot,
) -> None:
    bot = models_bot
    bot.discord.member_roles[ALICE] = [SUPPORTERS]
    image = bot.discord.upload(png(), "cat.png", "image/png")
    refused = await bot.discord.slash_command(
        "kontext", {"prompt": "make it gold", "model": "ultra"}, user_id=BOB, attachment=image
    )
    await bot.until(lambda: refused.callbacks)
    assert_refused_privately(bot.discord, refused, "The model ultra is not available here")
    assert "pro (120 credits), max (240 credits)" in refused.callbacks[0]["data"]["content"]
    assert bot.provider.creates == [] and await bot.balance(BOB) == 1200

    await bot.discord.slash_command(
        "kontext", {"prompt": "make it gold", "model": "ultra"}, user_id=ALICE, attachment=image
    )
    await bot.results(1)
    assert bot.provider.creates[0].model == MAX_ID
    assert await bot.balance(ALICE) == 900


async def test_help_and_credits_list_the_models_and_prices(models_bot: Bot) -> None:
    bot = models_bot
    helped = await bot.discord.slash_command("kontext-help", user_id=ALICE)
    credits = await bot.discord.slash_command("kontext-credits", user_id=ALICE)
    await bot.until(lambda: helped.callbacks and credits.callbacks)
    assert (
        "Models: pro (120 credits, default), max (240 credits), ultra (300 credits)."
        in (helped.callbacks[0]["data"]["content"])
    )
    text = credits.callbacks[0]["data"]["content"]
    assert "10 pro images at 120 each" in text
    assert "Credits per image: pro 120, max 240, ultra 300." in text


async def test_a_server_admin_allows_a_restricted_model_for_a_member(models_bot: Bot) -> None:
    bot = models_bot
    refused = await bot.discord.subcommand(
        "kontext-admin", "models", {"names": "ultra", "user": BOB}, user_id=ALICE
    )
    allowed = await bot.discord.subcommand(
        "kontext-admin", "models", {"names": "ultra", "user": BOB}, user_id=MOD
    )
    await bot.until(lambda: refused.callbacks and allowed.callbacks)
    assert "Only the bot's admins" in refused.callbacks[0]["data"]["content"]
    assert allowed.callbacks[0]["data"]["content"] == (
        f"Restricted models allowed for <@{BOB}>: ultra."
    )
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command(
        "kontext", {"prompt": "make it gold", "model": "ultra"}, user_id=BOB, attachment=image
    )
    await bot.results(1)
    assert await bot.balance(BOB) == 900

    removed = await bot.discord.subcommand(
        "kontext-admin", "models", {"names": "off", "user": BOB}, user_id=MOD
    )
    await bot.until(lambda: removed.callbacks)
    assert "No restricted models are allowed" in removed.callbacks[0]["data"]["content"]


# -- /kontext-history (issue 19) -----------------------------------------------------------------


async def _edit(bot: Bot, prompt: str, user: str = ALICE) -> dict[str, Any]:
    """One /kontext with an image, to its posted result and its job's end (the delivery
    is recorded just after the post)."""
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": prompt}, user_id=user, attachment=image
    )
    key = f"discord:{GUILD_ID}:interaction:{asked.id}"
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while (
            job := await bot.core.store.by_idempotency_key(key)
        ) is None or not job.state.terminal:
            await asyncio.sleep(0.02)
    assert job.state.value == "succeeded", job.error_message
    return bot.discord.message(CHANNEL_ID, str(asked.original_id))


async def _history(bot: Bot, asker: str, **options: Any) -> tuple[Interaction, dict[str, Any]]:
    """The answer, its text put back together: the first line is the content, the list
    is the embed's description."""
    asked = await bot.discord.slash_command("kontext-history", options or None, user_id=asker)
    await bot.until(lambda: asked.callbacks)
    message = bot.discord.message(CHANNEL_ID, str(asked.original_id))
    text = "\n".join([message["content"], *(e["description"] for e in message["embeds"])])
    return asked, {**message, "content": text}


def _labels(message: dict[str, Any]) -> list[list[str]]:
    return [[c["label"] for c in row["components"]] for row in message["components"]]


def _jump(message: dict[str, Any]) -> str:
    return f"https://discord.com/channels/{GUILD_ID}/{message['channel_id']}/{message['id']}"


async def test_history_lists_own_jobs_with_links_and_its_buttons_work(bot: Bot) -> None:
    older = await _edit(bot, "make it a watercolor")
    newer = await _edit(bot, "add a hat")
    await _edit(bot, "bob's own edit", user=BOB)
    balance = await bot.balance()

    asked, answer = await _history(bot, ALICE)
    (callback,) = asked.callbacks
    assert callback["type"] == 4 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    text = answer["content"]
    assert text.startswith("Your last 2 edits:")
    lines = text.splitlines()[1:]
    assert "add a hat" in lines[0] and "make it a watercolor" in lines[1], "newest first"
    assert "bob's own edit" not in text
    assert f"[result]({_jump(newer)})" in lines[0] and f"[result]({_jump(older)})" in lines[1]
    jobs = await bot.core.store.recent_for_user(UserRef("discord", GUILD_ID, ALICE))
    for line, job in zip(lines, jobs, strict=True):
        assert f"seed {job.seed}" in line and "delivered" in line and "120 credits" in line
        assert job.model in line
    assert _labels(answer) == [["Re-roll #1", "Edit again #1"], ["Re-roll #2", "Edit again #2"]]
    assert await bot.balance() == balance, "history is free"

    # Re-roll from the history answer: a new job of the newest prompt, public result.
    reroll = await bot.discord.click(answer, "Re-roll #1", user_id=ALICE)
    await bot.until(lambda: len(bot.provider.creates) == 4)
    await bot.until(lambda: any(m["id"] == reroll.original_id for m in bot.result_messages()))
    assert bot.provider.creates[3].input is not None
    assert bot.provider.creates[3].input["prompt"] == "add a hat"

    # Edit again from the history answer: the older result is the next input.
    again = await bot.discord.click(answer, "Edit again #2", user_id=ALICE)
    await bot.until(lambda: again.modal)
    submitted = await bot.discord.submit_modal(again, {"prompt": "now in winter"}, user_id=ALICE)
    await bot.until(lambda: any(m["id"] == submitted.original_id for m in bot.result_messages()))
    posted = bot.discord.attachment_bytes(older["attachments"][0])
    assert bot.provider.creates[4].file_bytes == posted, "the older result was the input"
    assert await bot.balance() == balance - 2 * 120


async def test_history_of_someone_else_is_for_admins_only(bot: Bot) -> None:
    await _edit(bot, "bob's watercolor", user=BOB)
    refused, answer = await _history(bot, ALICE, user=BOB)
    assert "only see your own history" in answer["content"]
    assert "watercolor" not in answer["content"] and answer["components"] == []
    assert refused.callbacks[0]["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL

    _, seen = await _history(bot, MOD, user=BOB)  # Manage Server, platform_admins on
    assert seen["content"].startswith(f"<@{BOB}>'s last 1 edit:")
    assert "bob's watercolor" in seen["content"]
    assert bot.discord.pingable(bot.discord.message_log[-1]) == set(), "Bob is not pinged"


async def test_empty_history_and_a_deleted_result_loses_its_link_and_buttons(bot: Bot) -> None:
    _, empty = await _history(bot, ALICE)
    assert empty["content"] == "You have no edits yet." and empty["components"] == []

    result = await _edit(bot, "make it a watercolor")
    deleted = await bot.discord.click(result, "Delete", user_id=ALICE)
    await bot.until(lambda: deleted.callbacks)
    await bot.until(
        lambda: result["id"] not in {m["id"] for m in bot.discord.channel_messages(CHANNEL_ID)}
    )
    alice = UserRef("discord", GUILD_ID, ALICE)
    async with asyncio.timeout(HANG_GUARD_SECONDS):  # the delete is recorded after Discord's
        while (await bot.core.store.recent_for_user(alice))[0].delivered is not None:
            await asyncio.sleep(0.02)
    _, answer = await _history(bot, ALICE)
    assert "make it a watercolor" in answer["content"] and "delivered" in answer["content"]
    assert "[result]" not in answer["content"] and answer["components"] == []


async def test_ten_jobs_fit_and_buttons_stay_within_discords_five_rows(bot: Bot) -> None:
    for n in range(10):
        await _edit(bot, f"edit number {n} " + "with a long prompt " * 5)
    _, answer = await _history(bot, ALICE)
    assert len(answer["content"]) > 2000, "only an embed holds ten lines with their links"
    assert answer["content"].count("[result](https://discord.com/channels/") == 10
    assert len(answer["components"]) == 5
    assert _labels(answer)[0] == ["Re-roll #1", "Edit again #1"]
    assert "edit number 9" in answer["content"].splitlines()[1]
    assert len(answer["content"].splitlines()) == 11, "all 10 jobs listed, 5 with buttons"
    # "/kontext prompt:history" is answered the same (privately, free), in an embed too.
    creates = len(bot.provider.creates)
    typed = await bot.discord.slash_command("kontext", {"prompt": "history"}, user_id=ALICE)
    await bot.until(lambda: typed.callbacks)
    (callback,) = typed.callbacks
    assert callback["type"] == 4 and callback["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL
    (embed,) = callback["data"]["embeds"]
    assert embed["description"].count("[result](https://discord.com/channels/") == 10
    assert len(bot.provider.creates) == creates


# -- presets on a result and in /kontext (issue 27) -------------------------------------------

ZOOM_OUT = next(p for p in SHIPPED_PRESETS if p["name"] == "zoom-out")["prompt"]


async def test_zoom_out_on_a_result_edits_that_result_with_the_preset_instruction(
    bot: Bot,
) -> None:
    first = await bot.edited()
    zoom = await bot.discord.click(first, "Zoom out", user_id=BOB)
    await bot.results(2)
    assert [c["type"] for c in zoom.callbacks] == [4]
    assert "120 credits reserved" in zoom.callbacks[0]["data"]["content"], "the cost is said"
    created = bot.provider.creates[1]
    assert created.input is not None
    assert created.input["prompt"] == " ".join(ZOOM_OUT.replace("{prompt}", "").split())
    assert created.input["aspect_ratio"] == "match_input_image"
    # The result, not the original upload, is the image edited; the seed is the result's.
    assert created.file_bytes == bot.discord.attachment_bytes(first["attachments"][0])
    assert created.input["seed"] == int(_field(first, "Seed"))
    assert await bot.balance(BOB) == 1080 and await bot.balance(ALICE) == 1080


async def test_more_select_applies_any_preset_and_vary_picks_a_new_seed(bot: Bot) -> None:
    first = await bot.edited()
    colorize = await bot.discord.choose(first, "More…", "colorize", user_id=ALICE)
    await bot.results(2)
    assert [c["type"] for c in colorize.callbacks] == [4]
    created = bot.provider.creates[1]
    assert created.input is not None and created.input["prompt"].startswith("Colorize this photo")
    assert created.file_bytes == bot.discord.attachment_bytes(first["attachments"][0])

    await bot.discord.click(first, "Vary (subtle)", user_id=ALICE)
    await bot.results(3)
    varied = bot.provider.creates[2]
    assert varied.input is not None and varied.input["prompt"].startswith("Make a subtle variation")
    assert varied.input["seed"] != int(_field(first, "Seed")), "a vary preset picks a new seed"
    assert await bot.balance(ALICE) == 1200 - 3 * 120


async def test_kontext_with_a_preset_option_and_no_prompt_and_an_unknown_one_refused_free(
    bot: Bot,
) -> None:
    image = bot.discord.upload(png(), "room.png", "image/png")
    await bot.discord.slash_command(
        "kontext", {"preset": "make-square"}, user_id=ALICE, attachment=image
    )
    await bot.results(1)
    (created,) = bot.provider.creates
    assert created.input is not None
    assert created.input["prompt"].startswith("Extend the scene to a square 1:1 frame")
    assert created.input["aspect_ratio"] == "1:1"

    other = bot.discord.upload(png(), "room.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"preset": "sparkle", "prompt": "x"}, user_id=ALICE, attachment=other
    )
    await bot.until(lambda: asked.callbacks)
    assert_refused_privately(bot.discord, asked, "There is no preset named 'sparkle'")
    assert len(bot.provider.creates) == 1 and await bot.balance() == 1080


async def test_a_preset_button_left_on_an_old_result_says_the_preset_is_gone(bot: Bot) -> None:
    """A preset the operator removed since: its button is answered clearly, and free."""
    first = await bot.edited()
    old = {**first, "components": [dict(r) for r in first["components"]]}
    row = old["components"][0]
    row["components"] = [
        {**c, "custom_id": c["custom_id"].replace("zoom-out", "retired")}
        if c.get("label") == "Zoom out"
        else c
        for c in row["components"]
    ]
    pressed = await bot.discord.click(old, "Zoom out", user_id=ALICE)
    await bot.until(lambda: pressed.callbacks)
    assert "no longer set up" in pressed.callbacks[0]["data"]["content"]
    assert len(bot.provider.creates) == 1 and await bot.balance() == 1080
