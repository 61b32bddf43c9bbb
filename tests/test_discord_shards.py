"""Discord sharding: the config keys, the fake gateway's sharding rules, and one bot
split over two ``kontext-bot run`` processes on one PostgreSQL database.

Discord's rules (https://discord.com/developers/docs/events/gateway#sharding): a session
identifies as ``shard: [shard_id, num_shards]``; a guild's events go to the session of
shard ``(guild_id >> 22) % num_shards``, DMs to shard 0; an invalid shard is closed with
4010, a session that would hold too many guilds with 4011.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.discord.adapter import DiscordAdapter
from bot.config import load_settings
from bot.errors import ConfigError
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import BOT_TOKEN, CHANNEL_ID, GUILD_ID, FakeDiscord, Interaction
from tests.pg import Cluster
from tests.support import (
    HANG_GUARD_SECONDS,
    discord_core,
    environment,
    make_settings,
    migrated_database,
    png,
)
from tests.support import start as start_process

ALICE = "5000000000000000001"
BOB = "5000000000000000002"
# GUILD_ID is on shard 1 of 2; this guild is on shard 0 of 2.
SHARD0_GUILD = str(int(GUILD_ID) + (1 << 22))
SHARD0_CHANNEL = "3000000000000000009"


def test_guild_ids_map_to_different_shards() -> None:
    assert (int(SHARD0_GUILD) >> 22) % 2 == 0
    assert (int(GUILD_ID) >> 22) % 2 == 1


# -- config ------------------------------------------------------------------------------


def _load(tmp_path: Path, discord: str) -> Any:
    path = tmp_path / "config.toml"
    path.write_text(f"[discord]\n{discord}\n")
    return load_settings(path).discord


def test_shard_keys_default_to_automatic_and_sync_here(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert (config.shard_count, config.shard_ids, config.syncs_commands) == (0, [], True)
    config = _load(tmp_path, "shard_count = 4\nshard_ids = [2, 3]")
    assert (config.shard_count, config.shard_ids, config.syncs_commands) == (4, [2, 3], False)
    assert _load(tmp_path, "shard_count = 4\nshard_ids = [1, 0]").syncs_commands
    assert _load(tmp_path, "shard_count = 4").syncs_commands  # all four shards here


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ("shard_ids = [0]", "discord.shard_ids needs discord.shard_count"),
        ("shard_count = 2\nshard_ids = [2]", "discord.shard_ids: [2] not in 0..1"),
        ("shard_count = 2\nshard_ids = [-1, 0]", "discord.shard_ids: [-1] not in 0..1"),
        ("shard_count = 2\nshard_ids = [1, 1]", "discord.shard_ids: each shard id may appear"),
        ("shard_count = -1", "discord.shard_count"),
    ],
)
def test_invalid_shard_settings_stop_config_load(tmp_path: Path, keys: str, words: str) -> None:
    with pytest.raises(ConfigError, match=r"(?s)invalid configuration.*" + re.escape(words)):
        _load(tmp_path, keys)


# -- the fake's sharding rules, on the wire --------------------------------------------------


async def _identify(fake: FakeDiscord, shard: Any) -> tuple[int | None, list[dict[str, Any]]]:
    """IDENTIFY with ``shard`` (absent when None); the close code, or None, and the
    dispatches received up to the session's last GUILD_CREATE or its close."""
    received: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"ws://127.0.0.1:{fake.port}/gateway") as ws,
    ):
        hello = await ws.receive_json(timeout=10)
        assert hello["op"] == 10
        data: dict[str, Any] = {"token": fake.token, "intents": 1, "properties": {}}
        if shard is not None:
            data["shard"] = shard
        await ws.send_json({"op": 2, "d": data})
        async with asyncio.timeout(10):
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                received.append(json.loads(message.data))
                if received[-1]["t"] == "READY" and not received[-1]["d"]["guilds"]:
                    break
                guilds = [g["id"] for g in received[0]["d"]["guilds"]]
                created = [m["d"]["id"] for m in received if m["t"] == "GUILD_CREATE"]
                if created == guilds:
                    break
        return ws.close_code, received


@pytest.mark.parametrize("shard", [[2, 2], [0, 0], [-1, 2], [1], [0, 1, 2], "0,1", [0.0, 1]])
async def test_fake_closes_an_invalid_shard_with_4010(shard: Any) -> None:
    async with FakeDiscord() as fake:
        code, received = await _identify(fake, shard)
    assert code == 4010
    assert received == [], "nothing is dispatched to a refused session"
    assert fake.ready_shards() == []


async def test_fake_hands_each_shard_its_own_guilds() -> None:
    async with FakeDiscord() as fake:
        fake.add_guild(SHARD0_GUILD, SHARD0_CHANNEL)
        code0, shard0 = await _identify(fake, [0, 2])
        code1, shard1 = await _identify(fake, [1, 2])
        code_all, unsharded = await _identify(fake, None)
    assert {code0, code1, code_all} <= {None, 1000}, (code0, code1, code_all)
    assert [g["id"] for g in shard0[0]["d"]["guilds"]] == [SHARD0_GUILD]
    assert [g["id"] for g in shard1[0]["d"]["guilds"]] == [GUILD_ID]
    assert shard0[0]["d"]["shard"] == [0, 2] and shard1[0]["d"]["shard"] == [1, 2]
    assert [m["d"]["id"] for m in shard0 if m["t"] == "GUILD_CREATE"] == [SHARD0_GUILD]
    assert [m["d"]["id"] for m in shard1 if m["t"] == "GUILD_CREATE"] == [GUILD_ID]
    assert {g["id"] for g in unsharded[0]["d"]["guilds"]} == {GUILD_ID, SHARD0_GUILD}


async def test_fake_requires_sharding_beyond_its_guilds_per_shard_with_4011() -> None:
    async with FakeDiscord(max_guilds_per_shard=1) as fake:
        fake.add_guild(SHARD0_GUILD, SHARD0_CHANNEL)
        code, received = await _identify(fake, None)
        assert (code, received) == (4011, [])
        code, received = await _identify(fake, [0, 2])
    assert code in (None, 1000) and received[0]["t"] == "READY"


# -- one process running every shard (discord.py's AutoShardedBot) ----------------------------


@pytest.fixture
async def sharded_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(recommended_shards=2) as fake:
        fake.add_guild(SHARD0_GUILD, SHARD0_CHANNEL)
        fake.add_user(ALICE, "alice")
        fake.add_user(BOB, "bob")
        yield fake


async def _adapter(
    tmp_path: Path, provider: FakeCoreToday, fake: FakeDiscord, **discord: Any
) -> tuple[Any, DiscordAdapter]:
    settings = make_settings(
        tmp_path,
        provider.base_url,
        discord={"enabled": True, "token": BOT_TOKEN, "api_base_url": fake.api_url, **discord},
    )

    core, adapter = await discord_core(settings)
    await core.start()
    try:
        await adapter.start()
    except BaseException:
        await core.close()
        raise
    return core, adapter


async def test_automatic_shard_count_runs_discords_recommendation_and_routes_by_guild(
    tmp_path: Path, fake: FakeCoreToday, sharded_fake: FakeDiscord
) -> None:
    core, adapter = await _adapter(tmp_path, fake, sharded_fake)  # shard_count 0
    try:
        assert sharded_fake.ready_shards() == [(0, 2), (1, 2)]
        assert sorted(i["shard"] for i in sharded_fake.identifies) == [[0, 2], [1, 2]]
        asked = [
            await sharded_fake.slash_command("kontext-help", user_id=ALICE, channel_id=channel)
            for channel in (SHARD0_CHANNEL, CHANNEL_ID)
        ]
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not all(a.callbacks for a in asked):
                await asyncio.sleep(0.02)
    finally:
        await adapter.stop()
        await core.close()
    interactions = [e for e in sharded_fake.gateway_log if e[1] == "INTERACTION_CREATE"]
    assert interactions == [
        ((0, 2), "INTERACTION_CREATE", SHARD0_GUILD),
        ((1, 2), "INTERACTION_CREATE", GUILD_ID),
    ]


async def test_a_fixed_shard_count_dials_the_gateway_get_gateway_bot_names(
    tmp_path: Path, fake: FakeCoreToday, sharded_fake: FakeDiscord
) -> None:
    """discord.py skips GET /gateway/bot when the count is given and would dial
    wss://gateway.discord.gg; the adapter asks for the address (a proxy's, the fake's)."""
    core, adapter = await _adapter(tmp_path, fake, sharded_fake, shard_count=2, shard_ids=[1])
    try:
        assert sharded_fake.ready_shards() == [(1, 2)]
        assert adapter.bot.shard_count == 2
        assert sharded_fake.commands == {}, "shard 0 is another process's: no sync here"
    finally:
        await adapter.stop()
        await core.close()


async def test_discord_requiring_more_shards_stops_start_with_a_clear_message(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    async with FakeDiscord(max_guilds_per_shard=1) as discord:
        discord.add_guild(SHARD0_GUILD, SHARD0_CHANNEL)
        with pytest.raises(ConfigError, match=r"4011 Sharding required.*discord\.shard_count"):
            await _adapter(tmp_path, fake, discord, shard_count=1)


# -- two processes, one bot ------------------------------------------------------------------


@pytest.fixture
async def pg_url(pg_cluster: Cluster | str) -> str:
    return await migrated_database(pg_cluster)


def _deliveries(fake: FakeDiscord, asked: Interaction) -> list[str]:
    """Every REST call that carried a file for this interaction: its webhook (the token)
    or a post in its channel with the bot token."""
    return [
        f"{c.method} {c.path}"
        for c in fake.calls
        if c.files
        and (asked.token in c.path or c.path.startswith(f"/channels/{asked.channel_id}/"))
    ]


async def test_two_processes_split_the_shards_and_answer_each_guild_once(
    tmp_path: Path, fake: FakeCoreToday, sharded_fake: FakeDiscord, pg_url: str
) -> None:
    discord = sharded_fake
    processes = []
    for shard in (0, 1):
        home = tmp_path / f"shard{shard}"  # its own machine, as far as files go
        home.mkdir()
        env = environment(
            home,
            fake,
            KONTEXT_STORAGE__URL=pg_url,
            KONTEXT_DISCORD__ENABLED="true",
            KONTEXT_DISCORD__TOKEN=BOT_TOKEN,
            KONTEXT_DISCORD__API_BASE_URL=discord.api_url,
            KONTEXT_DISCORD__SHARD_COUNT="2",
            KONTEXT_DISCORD__SHARD_IDS=f"[{shard}]",
        )
        processes.append(await start_process(["run"], env, home))
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            # Ready sessions: each process has run its setup hook (where a sync happens).
            while discord.ready_shards() != [(0, 2), (1, 2)]:
                await asyncio.sleep(0.05)
        image = discord.upload(png(), "cat.png", "image/png")
        asked = {
            guild: await discord.slash_command(
                "kontext",
                {"prompt": f"make it a watercolor ({guild})"},
                user_id=user,
                channel_id=channel,
                attachment=image,
            )
            for guild, channel, user in (
                (SHARD0_GUILD, SHARD0_CHANNEL, ALICE),
                (GUILD_ID, CHANNEL_ID, BOB),
            )
        }
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not all(_deliveries(discord, a) for a in asked.values()):
                await asyncio.sleep(0.05)
            # Let a second delivery, if any process were to make one, show itself: both
            # jobs are terminal once each process has nothing left to run.
            while len(fake.creates) < 2:
                await asyncio.sleep(0.05)
    finally:
        outputs = []
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            outputs.append(
                await asyncio.wait_for(process.communicate(), timeout=HANG_GUARD_SECONDS)
            )
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-3000:]

    # Each guild's interaction went to the session of its shard only, was answered
    # (publicly) by the process holding it, and its result was delivered once.
    sent = [e for e in discord.gateway_log if e[1] == "INTERACTION_CREATE"]
    assert sorted(sent) == [
        ((0, 2), "INTERACTION_CREATE", SHARD0_GUILD),
        ((1, 2), "INTERACTION_CREATE", GUILD_ID),
    ]
    for guild, interaction in asked.items():
        assert [c["type"] for c in interaction.callbacks] == [4], guild
        assert len(_deliveries(discord, interaction)) == 1, _deliveries(discord, interaction)
    assert len(fake.creates) == 2
    # Commands were synced once, globally, by the shard-0 process.
    assert len(discord.calls_to("PUT", "/applications/")) == 1
    assert "global" in discord.commands
