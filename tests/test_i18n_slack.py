"""Slack in the user's language (issue 28): real slack_bolt and slack_sdk against the
fake Slack in Socket Mode. A user whose Slack speaks ``ko-KR`` gets Korean answers,
form labels and results (their locale looked up once with ``users.info``
``include_locale``, then kept); an unknown locale reads English; an admin's
``/kontext language`` wins for the workspace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.adapter import SlackAdapter
from bot.app import Core, build_core
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import BOT_TOKEN, TEAM_ID, FakeSlack
from tests.support import HANG_GUARD_SECONDS, png, slack_socket_settings

USER, ADMIN, CHANNEL = "U0ALICE", "U0ADMIN", "C0ART"


@dataclass
class Bot:
    core: Core
    slack: FakeSlack

    async def command(self, text: str, user: str = USER) -> str:
        fields = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "channel_id": CHANNEL,
            "user_id": user,
            "command": "/kontext",
            "text": text,
            "trigger_id": "trigger-1",
            "response_url": f"{self.slack.base_url}/response/1",
        }
        acked = await self.slack.send_envelope("slash_commands", fields)
        return str(acked.get("text", ""))

    def locale_lookups(self, user: str = USER) -> list[Any]:
        return [
            c
            for c in self.slack.calls_to("users.info")
            if c.args.get("user") == user and c.args.get("include_locale")
        ]


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async with FakeSlack() as slack:
        settings = slack_socket_settings(tmp_path, fake.base_url, slack.api_url, ADMIN)
        core = await build_core(settings, lambda service: [SlackAdapter(settings.slack, service)])
        adapter = core.frontends["slack"]
        assert isinstance(adapter, SlackAdapter) and core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
        await core.start()
        await adapter.start()
        assert await adapter.ready()
        yield Bot(core, slack)
        await adapter.stop()
        await core.close()


async def test_a_korean_slack_user_gets_korean_answers_looked_up_once(bot: Bot) -> None:
    bot.slack.user_locales[USER] = "ko-KR"
    credits = await bot.command("credits")
    assert credits.startswith("잔액은 *1200 크레딧*입니다: 이미지 10장 (장당 120)."), credits
    helped = await bot.command("help")
    assert "예시:" in helped and "--seed N" in helped, "options stay as typed"
    assert len(bot.locale_lookups()) == 1, "the locale is kept after the first look-up"


async def test_a_korean_edit_from_the_form_to_the_result(bot: Bot) -> None:
    bot.slack.user_locales[USER] = "ko-KR"
    assert await bot.command("") == ""
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not bot.slack.views:
            await asyncio.sleep(0.01)
    view = next(iter(bot.slack.views.values()))
    assert view["title"]["text"] == "Kontext로 편집"
    assert view["submit"]["text"] == "편집" and view["close"]["text"] == "취소"
    labels = {b["block_id"]: b["label"]["text"] for b in view["blocks"] if "label" in b}
    assert labels["prompt"] == "무엇을 바꿀까요?"

    file = bot.slack.add_file("cat.png", png())
    values: dict[str, Any] = {
        "prompt": {"text": {"value": "make it a watercolor"}},
        "ratio": {"value": {"selected_option": None}},
        "seed": {"value": {"value": "7"}},
        "format": {"value": {"selected_option": {"value": "png"}}},
        "image": {"file": {"files": [file]}},
    }
    await bot.slack.send_envelope(
        "interactive", bot.slack.view_submission(view["id"], user=USER, values=values)
    )
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not [u for u in bot.slack.uploads.values() if u.channel]:
            await asyncio.sleep(0.02)
    (upload,) = [u for u in bot.slack.uploads.values() if u.channel]
    comment = upload.initial_comment or ""
    assert "make it a watercolor" in comment, "the prompt is never translated"
    assert "시드 7" in comment and "120 크레딧" in comment and "1080 남음" in comment, comment
    said = [c.args.get("text", "") for c in bot.slack.calls_to("chat.postMessage")]
    said += [r.get("text", "") for r in bot.slack.responses]
    assert any("대기열에 추가됨" in text for text in said), said
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not any("완료" in m["text"] for m in bot.slack.messages_in(CHANNEL)):
            await asyncio.sleep(0.02)


async def test_an_unknown_locale_reads_english(bot: Bot) -> None:
    bot.slack.user_locales[USER] = "sv-SE"
    assert (await bot.command("credits")).startswith("You have *1200 credits*: 10 images")


async def test_an_admins_workspace_language_wins_and_auto_gives_it_back(bot: Bot) -> None:
    bot.slack.user_locales[USER] = "ko-KR"
    refused = await bot.command("language de")
    assert refused.startswith("봇 관리자만"), refused
    unknown = await bot.command("language tlh", user=ADMIN)
    assert (
        unknown
        == "I have no tlh texts; choose one of: en, ko, ja, de, fr, es, pt_BR, zh_Hans (or auto)."
    )
    assert await bot.command("language de", user=ADMIN) == (
        "Dieser Workspace: Ich antworte jetzt auf Deutsch."
    )
    german = await bot.command("credits")
    assert german.startswith("Du hast *1200 Credits*: 10 Bilder zu je 120."), german
    back = await bot.command("language auto", user=ADMIN)
    assert back.startswith("Each person in this workspace now gets answers in their own")
    assert (await bot.command("credits")).startswith("잔액은")


async def test_the_fake_gives_a_users_locale_only_when_asked(bot: Bot) -> None:
    """Slack's users.info adds ``locale`` only with ``include_locale=true``
    (https://docs.slack.dev/reference/methods/users.info#arguments)."""
    bot.slack.user_locales["U0BOB"] = "ja-JP"
    client = AsyncWebClient(token=BOT_TOKEN, base_url=bot.slack.api_url)
    plain = await client.users_info(user="U0BOB")
    assert "locale" not in plain["user"]
    asked = await client.users_info(user="U0BOB", include_locale=True)
    assert asked["user"]["locale"] == "ja-JP"
    default = await client.users_info(user="U0NOBODY", include_locale=True)
    assert default["user"]["locale"] == "en-US", "Slack's default locale"


async def test_a_failed_locale_look_up_answers_in_english_and_is_asked_again(bot: Bot) -> None:
    """users.info failing never holds a request up, and is not kept: the next request
    asks again (the membership cache's rules)."""
    bot.slack.user_locales[USER] = "ko-KR"
    bot.slack.fail_methods["users.info"] = ["internal_error"]
    assert (await bot.command("credits")).startswith("You have *1200 credits*")
    assert (await bot.command("credits")).startswith("잔액은")
    assert len(bot.locale_lookups()) == 2
