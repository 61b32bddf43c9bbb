"""The Discord adapter: the real discord.py against the fake Discord (REST, gateway, CDN).

The tests play Discord's users through the fake: slash commands with attachments,
button clicks, modal submissions, message context menus and art-channel messages
arrive as gateway events, and what the bot did is read back from the fake's REST
records and stored messages.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from adapters.discord import DiscordAdapter
from bot.app import Core, build_core
from bot.config import Settings
from bot.domain import JobState, UserRef
from tests.conftest import make_settings
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import (
    ART_CHANNEL_ID,
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MESSAGE_FLAG_EPHEMERAL,
    FakeDiscord,
)

ALICE = "5000000000000000001"
BOB = "5000000000000000002"
MOD = "5000000000000000003"


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Bot:
    core: Core
    adapter: DiscordAdapter
    discord: FakeDiscord
    provider: FakeCoreToday
    settings: Settings

    async def until(self, check: Callable[[], Any], timeout: float = 15.0) -> Any:
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

    async def results(self, count: int, channel: str = CHANNEL_ID) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.result_messages(channel)) >= count)
        return self.result_messages(channel)

    async def balance(self, user: str = ALICE) -> int:
        return (await self.core.service.credits(UserRef("discord", GUILD_ID, user))).balance


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
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        **sections,
    )
    core = await build_core(settings, {})
    adapter = DiscordAdapter(
        settings.discord, core.service, data_dir=settings.storage.data_dir, guild_ready_timeout=0.1
    )
    core.register_frontend(adapter)
    assert core.runner is not None
    core.runner.limits = replace(core.runner.limits, idle_scan_seconds=0.1)
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
    }
    assert await bot.adapter.ready()


async def test_slash_command_with_image_defers_and_posts_the_result_with_buttons(
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
    assert [c["type"] for c in asked.callbacks] == [5], "deferred, public"
    assert not asked.callbacks[0].get("data", {}).get("flags", 0) & MESSAGE_FLAG_EPHEMERAL
    assert result["id"] == asked.original_id, "the deferred response became the result"
    assert result["content"] == f"<@{ALICE}>"
    (embed,) = result["embeds"]
    assert embed["description"] == "make it a watercolor"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "42"
    assert fields["Credits"] == "120 used · 1080 left"
    assert embed["image"]["url"] == f"attachment://{result['attachments'][0]['filename']}"
    labels = [c["label"] for row in result["components"] for c in row["components"]]
    assert labels == ["Re-roll", "Edit again", "Delete"]
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
