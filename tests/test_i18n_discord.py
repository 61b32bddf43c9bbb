"""Discord in the user's language (issue 28): real discord.py against the fake Discord.
A user whose client speaks Korean gets the queued, result, refusal and credits texts in
Korean and sees the commands under Korean names; an unknown locale reads the server's
language or English; an admin's language for the server wins; the fake refuses
localizations Discord would refuse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.discord.adapter import DiscordAdapter
from bot.app import Core
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.discord import (
    APPLICATION_ID,
    BOT_TOKEN,
    CHANNEL_ID,
    GUILD_ID,
    MANAGE_GUILD,
    MESSAGE_FLAG_EPHEMERAL,
    FakeDiscord,
    chat_input_name_ok,
)
from tests.support import HANG_GUARD_SECONDS, discord_core, make_settings, png

ALICE, BOB, MOD = "1001", "1002", "1003"


@dataclass
class Bot:
    core: Core
    adapter: DiscordAdapter
    discord: FakeDiscord

    async def until(self, check: Callable[[], Any]) -> Any:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not (found := check()):
                await asyncio.sleep(0.02)
        return found

    async def answer(self, interaction: Any) -> str:
        await self.until(lambda: interaction.callbacks)
        return str(interaction.callbacks[0]["data"]["content"])

    def command(self, name: str) -> dict[str, Any]:
        return next(c for c in self.discord.commands[GUILD_ID] if c["name"] == name)


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeDiscord() as discord:
        for user, name in ((ALICE, "alice"), (BOB, "bob"), (MOD, "mod")):
            discord.add_user(user, name)
        discord.permissions[MOD] = MANAGE_GUILD
        settings = make_settings(
            tmp_path,
            fake.base_url,
            discord={
                "enabled": True,
                "token": BOT_TOKEN,
                "api_base_url": discord.api_url,
                "guild_ids": [int(GUILD_ID)],
                "progress_interval_seconds": 0.2,
            },
            jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
            credits={"platform_admins": True},
        )

        core, adapter = await discord_core(settings)
        assert core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
        await core.start()
        await adapter.start()
        yield Bot(core, adapter, discord)
        await adapter.stop()
        await core.close()


async def test_a_korean_client_gets_korean_queued_and_result_texts(
    bot: Bot, fake: FakeCoreToday
) -> None:
    bot.discord.user_locales[ALICE] = "ko"
    image = bot.discord.upload(png(), "cat.png", "image/png")
    asked = await bot.discord.slash_command(
        "kontext", {"prompt": "make it a watercolor", "seed": 42}, user_id=ALICE, attachment=image
    )
    queued = await bot.answer(asked)
    assert "대기열에 추가됨 (순서 1): 120 크레딧 예약, 1080 남음. 시드 42." in queued

    result = await bot.until(
        lambda: next((m for m in bot.discord.channel_messages(CHANNEL_ID) if m.get("embeds")), None)
    )
    (embed,) = result["embeds"]
    assert embed["description"] == "make it a watercolor", "the prompt is never translated"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["시드"] == "42"
    assert fields["크레딧"] == "120 사용 · 1080 남음"
    assert embed["footer"]["text"].startswith("작업 ")
    rows = [
        [c.get("label") or c.get("placeholder") for c in row["components"]]
        for row in result["components"]
    ]
    # The default [results] buttons, the shipped presets' labels and More… in Korean.
    assert rows == [
        ["다시 생성", "이어서 편집", "변형(약하게)", "줌 아웃", "정사각형으로"],
        ["삭제"],
        ["더 보기…"],
    ]
    more = result["components"][2]["components"][0]
    assert {o["value"]: o["label"] for o in more["options"]}["colorize"] == "컬러화"
    (create,) = fake.creates
    assert create.input is not None and create.input["prompt"] == "make it a watercolor"


async def test_korean_credits_refusal_and_synced_names(bot: Bot) -> None:
    bot.discord.user_locales[ALICE] = "ko"
    credits = await bot.answer(await bot.discord.slash_command("kontext-credits", user_id=ALICE))
    assert credits.startswith("잔액은 **1200 크레딧**입니다: 이미지 10장 (장당 120).")

    # A refusal: an admin (whose client is English) pauses the server.
    paused = await bot.answer(
        await bot.discord.subcommand("kontext-admin", "pause", {}, user_id=MOD)
    )
    assert paused.startswith("Paused: the bot is paused in this server")
    refused = await bot.discord.slash_command("kontext", {"prompt": "a cat"}, user_id=ALICE)
    text = await bot.answer(refused)
    assert "관리자가 이곳에서 봇을 잠시 멈췄습니다. 크레딧은 차감되지 않았습니다." in text
    assert refused.callbacks[0]["data"]["flags"] & MESSAGE_FLAG_EPHEMERAL

    # The synced definitions: Korean names and descriptions; options keep their names.
    history = bot.command("kontext-credits")
    assert history["name_localizations"]["ko"] == "kontext-크레딧"
    assert history["description_localizations"]["ko"] == "내 크레딧 잔액"
    assert history["name_localizations"]["ja"] == "kontext-クレジット"
    assert history["name_localizations"]["zh-CN"] == "kontext-积分"
    assert history["name_localizations"]["pt-BR"] == "kontext-créditos"
    assert "zh-TW" not in history["name_localizations"], "no Traditional Chinese catalog"
    kontext = bot.command("kontext")
    assert not kontext.get("name_localizations"), "/kontext is /kontext everywhere"
    prompt = next(o for o in kontext["options"] if o["name"] == "prompt")
    assert not prompt.get("name_localizations"), "option names stay as typed"
    assert prompt["description_localizations"]["ko"] == "바꿀 내용 (예: 수채화로 바꿔 줘)"
    admin = bot.command("kontext-admin")
    subs = {o["name"]: o for o in admin["options"]}
    assert subs["pause"]["name_localizations"]["de"] == "pausieren"
    for definition in bot.discord.commands[GUILD_ID]:
        for name in (definition.get("name_localizations") or {}).values():
            if definition.get("type", 1) == 1:
                assert chat_input_name_ok(name), name


async def test_an_unknown_locale_reads_the_servers_language_else_english(bot: Bot) -> None:
    bot.discord.user_locales[BOB] = "sv-SE"
    english = await bot.answer(await bot.discord.slash_command("kontext-credits", user_id=BOB))
    assert english.startswith("You have **1200 credits**: 10 images at 120 each.")
    bot.discord.guild_locale = "de"
    german = await bot.answer(await bot.discord.slash_command("kontext-credits", user_id=BOB))
    assert german.startswith("Du hast **1200 Credits**: 10 Bilder zu je 120.")


async def test_an_admins_language_for_the_server_wins_until_set_back_to_auto(bot: Bot) -> None:
    bot.discord.user_locales[ALICE] = "ko"
    refused = await bot.answer(
        await bot.discord.subcommand("kontext-admin", "language", {"language": "de"}, user_id=BOB)
    )
    assert refused.startswith("Only the bot's admins can do that"), refused
    done = await bot.answer(
        await bot.discord.subcommand("kontext-admin", "language", {"language": "ja"}, user_id=MOD)
    )
    assert done == "これからこのサーバーでは日本語で答えます。"
    for user in (ALICE, BOB):  # a Korean client and an English one
        text = await bot.answer(await bot.discord.slash_command("kontext-credits", user_id=user))
        assert text.startswith("残高は**1200クレジット**です"), text
    back = await bot.answer(
        await bot.discord.subcommand("kontext-admin", "language", {"language": "auto"}, user_id=MOD)
    )
    assert back.startswith("Each person in this server now gets answers in their own language")
    korean = await bot.answer(await bot.discord.slash_command("kontext-credits", user_id=ALICE))
    assert korean.startswith("잔액은")


# -- the fake refuses what Discord refuses ------------------------------------------------------


async def test_the_fake_refuses_localizations_discord_refuses() -> None:
    """https://discord.com/developers/docs/reference#locales and the naming rule
    (#application-command-object-application-command-naming): 400 / 50035."""

    def command(**fields: Any) -> list[dict[str, Any]]:
        return [{"name": "kontext-help", "description": "How to use", "type": 1, **fields}]

    async with (
        FakeDiscord() as discord,
        httpx.AsyncClient(
            base_url=discord.api_url, headers={"Authorization": f"Bot {BOT_TOKEN}"}
        ) as http,
    ):
        url = f"/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands"

        async def sync(body: list[dict[str, Any]]) -> httpx.Response:
            return await http.put(url, json=body)

        cases = {
            "not a Discord locale": command(name_localizations={"ko-KR": "kontext-도움말"}),
            "upper case": command(name_localizations={"de": "Kontext-Hilfe"}),
            "a space": command(name_localizations={"fr": "kontext aide"}),
            "too long": command(name_localizations={"es": "k" * 33}),
            "a description over 100": command(description_localizations={"ja": "説" * 101}),
            "an option's name": command(
                options=[
                    {
                        "type": 3,
                        "name": "topic",
                        "description": "what",
                        "name_localizations": {"ko": "주 제"},
                    }
                ]
            ),
        }
        for why, body in cases.items():
            refused = await sync(body)
            assert refused.status_code == 400, why
            assert refused.json()["code"] == 50035, why
            assert "discord.com/developers/docs" in refused.json()["message"], why
        assert discord.commands.get(GUILD_ID) is None, "a refused overwrite changes nothing"

        fine = await sync(
            [
                *command(
                    name_localizations={"ko": "kontext-도움말", "hi": "सहायता", "th": "ช่วยเหลือ"}
                ),
                # A message command may be mixed case and have spaces.
                {
                    "name": "Edit with Kontext",
                    "type": 3,
                    "name_localizations": {"de": "Mit Kontext"},
                },
            ]
        )
        assert fine.status_code == 200, fine.text
        assert discord.commands[GUILD_ID][0]["name_localizations"]["ko"] == "kontext-도움말"
