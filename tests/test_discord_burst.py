"""A contest in one Discord guild (issue 24): many ``/kontext`` at once against a fake
Discord that keeps Discord's buckets (``X-RateLimit-*``, 429 with ``retry_after``, the
global limit), through the real discord.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.discord.pacing import ChannelSlots
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import CHANNEL_ID, FakeDiscord, RouteLimits
from tests.support import png
from tests.test_discord import ALICE, Bot, start_bot

BURST = 150
# People press Enter at about the same time, not in the same millisecond: this many
# interactions are on their way at once (each is answered within Discord's 3 s).
IN_FLIGHT = 10


@pytest.fixture
async def contest(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord(route_limits=RouteLimits()) as discord:
        for n in range(BURST):
            discord.add_user(f"60000000000000{n:05d}", f"entrant{n}")
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


def bot_results(bot: Bot) -> list[dict[str, object]]:
    return [
        m
        for m in bot.discord.channel_messages(CHANNEL_ID)
        if m["author"]["bot"] and m["attachments"] and m["components"]
    ]


async def test_150_kontext_commands_in_one_guild_are_all_delivered_and_none_refunded(
    contest: Bot,
) -> None:
    bot = contest
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def enter(n: int) -> None:
        async with gate:
            image = bot.discord.upload(png((n, 80, 160)), f"entry{n}.png", "image/png")
            await bot.discord.slash_command(
                "kontext",
                {"prompt": "make it a watercolor"},
                user_id=f"60000000000000{n:05d}",
                attachment=image,
            )

    await asyncio.gather(*(enter(n) for n in range(BURST)))
    await bot.until(lambda: len(bot_results(bot)) >= BURST)
    assert len(bot.provider.creates) == BURST
    results = bot_results(bot)
    assert len(results) == BURST
    # One result per person, each on its own interaction's message.
    assert len({str(m["content"]) for m in results}) == BURST
    async with asyncio.timeout(60):
        while (counts := await bot.core.store.counts_by_state()).get("succeeded", 0) < BURST:
            await asyncio.sleep(0.05)
    assert counts.get("failed", 0) == 0
    # No interaction missed Discord's 3 s for its first answer.
    assert bot.discord.refusals(10062) == []


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord)
        yield Bot(core, adapter, discord, fake, settings)
        await adapter.stop()
        await core.close()


async def test_a_result_discord_keeps_refusing_is_posted_when_it_allows(bot: Bot) -> None:
    bot.provider.script.polls_before_done = 5
    image = bot.discord.upload(png(), "cat.png", "image/png")
    await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
    )
    await bot.until(lambda: bot.provider.creates)
    # From now on, more 429s than discord.py waits out (5 tries): the result post meets
    # them, and waits for Discord instead of being refunded.
    bot.discord.rate_limits["PATCH /webhooks/"] = 8
    (result,) = await bot.results(1)
    assert result["attachments"]
    assert bot.discord.rate_limits["PATCH /webhooks/"] == 0
    async with asyncio.timeout(60):
        while (counts := await bot.core.store.counts_by_state()).get("succeeded", 0) < 1:
            await asyncio.sleep(0.05)
    assert counts.get("failed", 0) == 0
    limited = bot.core.metrics.platform_rate_limited.labels("discord", "PATCH")
    assert limited._value.get() >= 1


async def test_a_channel_lets_a_few_calls_through_at_once_and_queues_the_rest() -> None:
    slots = ChannelSlots(2)
    inside: list[int] = []
    most = 0
    release = asyncio.Event()

    async def call(channel: str) -> None:
        nonlocal most
        async with slots.hold(channel):
            inside.append(1)
            most = max(most, len(inside))
            await release.wait()
            inside.pop()

    tasks = [asyncio.create_task(call("C1")) for _ in range(5)]
    other = asyncio.create_task(call("C2"))  # another channel is not held up
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(inside) == 3  # two of C1's, and C2's
    release.set()
    await asyncio.gather(*tasks, other)
    assert most == 3 and inside == []
