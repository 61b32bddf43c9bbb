"""The welcome on join (issue 29): added to a server while it runs, the bot posts one short
greeting in the server's system channel, once per server, and not at all with
``discord.welcome = false``. Real discord.py against the fake gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.discord.adapter import DiscordAdapter
from bot.app import Core, build_core
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.support import HANG_GUARD_SECONDS, make_settings

NEW_GUILD, NEW_CHANNEL = "7000000000000000001", "7000000000000000002"
OTHER_GUILD, OTHER_CHANNEL = "7000000000000000003", "7000000000000000004"


async def until(check: Callable[[], Any]) -> Any:
    """Waits on the fake's state (a hang guard, not a measured delay)."""
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not (value := check()):
            await asyncio.sleep(0.02)
    return value


async def join(discord: FakeDiscord, guild: str, channel: str) -> None:
    """What Discord sends when someone adds the bot to a server: GUILD_CREATE for a
    server the session did not have, with its system channel and without the
    ``unavailable`` flag (which marks a server coming back from an outage; discord.py
    tells a join from that by its absence)."""
    discord.add_guild(guild, channel)
    payload = discord.guild_payload(guild)
    payload["system_channel_id"] = channel
    del payload["unavailable"]
    await discord.dispatch("GUILD_CREATE", payload)


@pytest.fixture
async def running(
    tmp_path: Path, fake: FakeCoreToday, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Core, DiscordAdapter, FakeDiscord]]:
    welcome = getattr(request, "param", True)
    async with FakeDiscord() as discord:
        settings = make_settings(
            tmp_path,
            fake.base_url,
            discord={
                "enabled": True,
                "token": BOT_TOKEN,
                "api_base_url": discord.api_url,
                "welcome": welcome,
            },
        )
        core = await build_core(
            settings,
            lambda service: [
                DiscordAdapter(
                    settings.discord,
                    service,
                    data_dir=settings.storage.data_dir,
                    guild_ready_timeout=0.1,
                )
            ],
        )
        adapter = core.frontends["discord"]
        assert isinstance(adapter, DiscordAdapter)
        await core.start()
        await adapter.start()
        try:
            yield core, adapter, discord
        finally:
            await adapter.stop()
            await core.close()


async def test_a_new_server_is_greeted_once_in_its_system_channel(
    running: tuple[Core, DiscordAdapter, FakeDiscord],
) -> None:
    _core, adapter, discord = running
    await join(discord, NEW_GUILD, NEW_CHANNEL)
    (message,) = await until(lambda: discord.channel_messages(NEW_CHANNEL))
    text = message["content"]
    assert text.startswith("Hi! I edit images with FLUX.1 Kontext")
    assert "/kontext-help" in text and "/kontext-admin grant" in text
    (posted,) = discord.calls_to("POST", f"/channels/{NEW_CHANNEL}/messages")
    assert posted.json["allowed_mentions"]["parse"] == []  # pings nobody
    # Kicked and invited again: no second greeting. A second new server is the marker
    # that the rejoin's event was handled (events are handled in order).
    await discord.dispatch("GUILD_DELETE", {"id": NEW_GUILD})
    await until(lambda: adapter.bot.get_guild(int(NEW_GUILD)) is None)
    await join(discord, NEW_GUILD, NEW_CHANNEL)
    await join(discord, OTHER_GUILD, OTHER_CHANNEL)
    await until(lambda: discord.channel_messages(OTHER_CHANNEL))
    assert len(discord.channel_messages(NEW_CHANNEL)) == 1


@pytest.mark.parametrize("running", [False], indirect=True, ids=["welcome-off"])
async def test_no_greeting_when_turned_off(
    running: tuple[Core, DiscordAdapter, FakeDiscord], tmp_path: Path
) -> None:
    _core, adapter, discord = running
    await join(discord, NEW_GUILD, NEW_CHANNEL)
    guild = await until(lambda: adapter.bot.get_guild(int(NEW_GUILD)))
    # The bot's own join handler, run to its end on the cached server.
    await adapter.bot.on_guild_join(guild)
    assert discord.channel_messages(NEW_CHANNEL) == []
    assert not (tmp_path / "data" / "discord-welcomed.json").exists()


# -- Slack: the first time someone opens the Messages tab ---------------------------------


def opened(channel: str, user: str = "U0ALICE") -> dict[str, Any]:
    """Slack's app_home_opened event for the Messages tab
    (https://docs.slack.dev/reference/events/app_home_opened)."""
    return {
        "type": "app_home_opened",
        "user": user,
        "channel": channel,
        "tab": "messages",
        "event_ts": "1700000000.000100",
    }


@pytest.mark.parametrize("mode", ["http", "socket"])
async def test_slack_says_what_it_does_once_in_an_empty_dm(
    tmp_path: Path, fake: FakeCoreToday, mode: str
) -> None:
    from tests.test_slack import serving

    async for bot in serving(mode, tmp_path, fake):
        await greeted_once(bot, bot.slack)


async def greeted_once(bot: Any, slack: FakeSlack) -> None:
    await bot.event(opened("D0ALICE"), "Ev0001")
    (hello,) = await until(lambda: slack.history.get("D0ALICE"))
    assert hello["text"].startswith("Hi! I edit images with FLUX.1 Kontext")
    assert "/kontext help" in hello["text"] and "/kontext grant" in hello["text"]
    # Opened again: the DM is not empty any more, so nothing more is said. Bob's first
    # open (handled after it) marks that the second event was handled.
    await bot.event(opened("D0ALICE"), "Ev0002")
    await until(lambda: len(slack.calls_to("conversations.history")) >= 2)
    await bot.event(opened("D0BOB", user="U0BOB"), "Ev0003")
    await until(lambda: slack.history.get("D0BOB"))
    assert len(slack.history["D0ALICE"]) == 1
    # The Home tab is no greeting's place.
    await bot.event({**opened("D0CAROL", user="U0CAROL"), "tab": "home"}, "Ev0004")
    await bot.event(opened("D0DAVE", user="U0DAVE"), "Ev0005")
    await until(lambda: slack.history.get("D0DAVE"))
    assert not slack.history.get("D0CAROL")


async def test_slack_stays_quiet_when_turned_off(tmp_path: Path, fake: FakeCoreToday) -> None:
    from adapters.slack.listeners import SlackListeners
    from adapters.slack.style import SlackStyle
    from bot.chat.conversation import Conversation
    from tests.test_slack import serving

    async for bot in serving("http", tmp_path, fake):
        bot.adapter.config.welcome = False
        listeners = SlackListeners(bot.adapter, Conversation(bot.core.service, SlackStyle()))
        # The bot's own handler of the event, run to its end.
        await listeners.on_app_home_opened(opened("D0ALICE"))
        assert not bot.slack.calls_to("conversations.history")
        assert not bot.slack.history.get("D0ALICE")
