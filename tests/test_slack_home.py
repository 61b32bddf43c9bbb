"""Slack's Home tab (issue 28): real slack_bolt and slack_sdk against the fake Slack in
Socket Mode. Opening the tab publishes the person's screen (views.publish, held to
Block Kit's limits by the fake): their credits, their last five edits with the posted
result as a thumbnail and Re-roll / Edit again, New edit (the /kontext modal with a
channel picker), a friendly start for someone with no edits, and for admins the shared
budget, today's spend and the dashboard's link when one is configured."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from adapters.slack.adapter import SlackAdapter
from bot.app import Core, build_core
from bot.domain import JobState, UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import TEAM_ID, VIEW_MAX_BLOCKS, FakeSlack
from tests.support import HANG_GUARD_SECONDS, png, slack_socket_settings

USER, ADMIN, CHANNEL, OTHER = "U0ALICE", "U0ADMIN", "C0ART", "C0OTHER"
DASHBOARD_URL = "https://kontext.example.com/dashboard"


@dataclass
class Bot:
    core: Core
    slack: FakeSlack
    provider: FakeCoreToday

    async def open_home(self, user: str = USER) -> dict[str, Any]:
        """The person opens the Home tab; returns the view published for them."""
        before = len(self.slack.calls_to("views.publish"))
        event = {
            "type": "app_home_opened",
            "user": user,
            "channel": f"D{user}",
            "tab": "home",
            "event_ts": "1700000000.000100",
        }
        envelope = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "api_app_id": "A0KONTEXT",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{user}{before}",
            "event_time": 1700000000,
        }
        await self.slack.send_envelope("events_api", envelope)
        await self.publishes(before + 1)
        return self.slack.home_views.get(user, {})

    async def publishes(self, count: int) -> None:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.slack.calls_to("views.publish")) < count:
                await asyncio.sleep(0.01)

    async def click(self, action_id: str, value: str, user: str = USER) -> None:
        """A button of the user's Home tab pressed (a ``block_actions`` payload from a
        view, https://docs.slack.dev/reference/interaction-payloads/block_actions-payload)."""
        home = self.slack.home_views.get(user, {})
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM_ID, "domain": "test"},
            "user": {"id": user, "team_id": TEAM_ID},
            "api_app_id": "A0KONTEXT",
            "container": {"type": "view", "view_id": home.get("id")},
            "trigger_id": f"trigger-{action_id}-{len(self.slack.calls)}",
            "view": home,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": f"1700000001.{len(self.slack.calls):06d}",
                }
            ],
        }
        await self.slack.send_envelope("interactive", payload)

    async def opened(self, count: int) -> dict[str, Any]:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.slack.views) < count:
                await asyncio.sleep(0.01)
        return list(self.slack.views.values())[count - 1]

    def uploads(self) -> list[Any]:
        return [u for u in self.slack.uploads.values() if u.channel]

    async def uploaded(self, count: int) -> list[Any]:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while len(self.uploads()) < count:
                await asyncio.sleep(0.02)
        return self.uploads()

    async def submit_modal(
        self, view: dict[str, Any], prompt: str, *, channel: str | None = None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "prompt": {"text": {"value": prompt}},
            "ratio": {"value": {"selected_option": None}},
            "seed": {"value": {"value": None}},
            "format": {"value": {"selected_option": {"value": "png"}}},
        }
        blocks = {b.get("block_id") for b in view["blocks"]}
        if "image" in blocks:
            values["image"] = {"file": {"files": [self.slack.add_file("cat.png", png())]}}
        if "channel" in blocks:
            values["channel"] = {"value": {"selected_conversation": channel}}
        payload = self.slack.view_submission(view["id"], user=USER, values=values)
        return await self.slack.send_envelope("interactive", payload)

    async def edit(self, prompt: str, done: int) -> None:
        """One edit the ordinary way (/kontext, the modal), until its result is posted."""
        fields = {
            "token": "legacy",
            "team_id": TEAM_ID,
            "channel_id": CHANNEL,
            "user_id": USER,
            "command": "/kontext",
            "text": prompt,
            "trigger_id": f"trigger-{done}",
            "response_url": f"{self.slack.base_url}/response/{done}",
        }
        before = len(self.slack.views)
        await self.slack.send_envelope("slash_commands", fields)
        view = await self.opened(before + 1)
        await self.submit_modal(view, prompt)
        await self.uploaded(done)
        await self.succeeded(done)

    async def succeeded(self, count: int) -> None:
        """Until ``count`` of the user's jobs have ended with their result recorded."""
        me = UserRef("slack", TEAM_ID, USER)
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while True:
                jobs = await self.core.service.job_history(me, me, limit=50)
                if sum(j.state == JobState.SUCCEEDED for j in jobs) >= count:
                    return
                await asyncio.sleep(0.02)


async def serve(tmp_path: Path, fake: FakeCoreToday, **sections: Any) -> AsyncIterator[Bot]:
    async with FakeSlack() as slack:
        slack.add_channel(OTHER)
        settings = slack_socket_settings(tmp_path, fake.base_url, slack.api_url, ADMIN, **sections)
        core = await build_core(settings, lambda service: [SlackAdapter(settings.slack, service)])
        adapter = core.frontends["slack"]
        assert isinstance(adapter, SlackAdapter) and core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
        await core.start()
        await adapter.start()
        assert await adapter.ready()
        yield Bot(core, slack, fake)
        await adapter.stop()
        await core.close()


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async for served in serve(tmp_path, fake):
        yield served


def section_texts(view: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in view["blocks"] if b["type"] == "section"]


def buttons(view: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (e["action_id"], e["text"]["text"], str(e.get("value")))
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def thumbnails(view: dict[str, Any]) -> list[str]:
    return [
        b["accessory"]["slack_file"]["id"]
        for b in view["blocks"]
        if b["type"] == "section" and (b.get("accessory") or {}).get("type") == "image"
    ]


async def test_the_home_tab_shows_credits_the_five_latest_edits_and_their_buttons(
    bot: Bot,
) -> None:
    for n in range(1, 7):
        await bot.edit(f"edit number {n}", n)
    view = await bot.open_home()
    assert view["type"] == "home"
    texts = section_texts(view)
    # 6 edits at 120 of 1,200: 480 left, 4 images.
    assert texts[0].startswith("You have *480 credits*: 4 images at 120 each."), texts[0]
    assert "Next allowance of 1200" in texts[0]
    edits = [t for t in texts if "edit number" in t]
    assert [e.split("`")[1] for e in edits] == [f"edit number {n}" for n in (6, 5, 4, 3, 2)]
    # Each shown edit has its posted result as the thumbnail, by Slack file id.
    me = UserRef("slack", TEAM_ID, USER)
    jobs = await bot.core.service.job_history(me, me, limit=5)
    assert thumbnails(view) == [str((j.delivered or {})["file"]) for j in jobs]
    assert set(thumbnails(view)) <= set(bot.slack.files)
    pressed = buttons(view)
    assert pressed[0][:2] == ("kontext_new_edit", "New edit")
    assert [(a, v) for a, _, v in pressed[1:]] == [
        (action, job.id) for job in jobs for action in ("kontext_reroll", "kontext_edit_again")
    ]
    assert "Shared budget" not in json.dumps(view), "not an admin"


async def test_someone_with_no_edits_gets_a_friendly_start(bot: Bot) -> None:
    view = await bot.open_home()
    texts = section_texts(view)
    assert texts[0].startswith("You have *1200 credits*: 10 images at 120 each.")
    assert texts[1].startswith("You have no edits yet. Press *New edit* to make your first")
    assert thumbnails(view) == []
    assert [a for a, _, _ in buttons(view)] == ["kontext_new_edit"]


async def test_new_edit_from_home_posts_in_the_chosen_channel(bot: Bot) -> None:
    await bot.open_home()
    await bot.click("kontext_new_edit", "new")
    modal = await bot.opened(1)
    picker = next(b for b in modal["blocks"] if b["block_id"] == "channel")
    assert picker["label"]["text"] == "Post the result in"
    assert picker["element"]["type"] == "conversations_select"
    # Submitting without a channel keeps the modal open with the picker's error.
    refused = await bot.submit_modal(modal, "make it ink")
    assert refused.get("response_action") == "errors"
    assert "channel" in refused["errors"]
    assert bot.provider.creates == []

    answer = await bot.submit_modal(modal, "make it ink", channel=OTHER)
    assert not answer.get("response_action"), answer
    (upload,) = await bot.uploaded(1)
    assert upload.channel == OTHER and "make it ink" in (upload.initial_comment or "")
    await bot.succeeded(1)
    # The Home tab is published again after the request, and shows the new edit.
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while "make it ink" not in json.dumps(bot.slack.home_views[USER]):
            await bot.open_home()


async def test_new_edit_to_a_channel_without_the_bot_is_refused_in_the_modal(bot: Bot) -> None:
    bot.slack.add_channel("C0EMPTY", bot_member=False)
    await bot.open_home()
    await bot.click("kontext_new_edit", "new")
    modal = await bot.opened(1)
    refused = await bot.submit_modal(modal, "make it ink", channel="C0EMPTY")
    assert refused.get("response_action") == "errors"
    assert "/invite" in refused["errors"]["channel"]
    assert bot.uploads() == []
    me = UserRef("slack", TEAM_ID, USER)
    assert (await bot.core.service.credits(me)).balance == 1200, "nothing charged"


async def test_reroll_from_home_posts_where_the_first_one_was(bot: Bot) -> None:
    await bot.edit("make it a watercolor", 1)
    view = await bot.open_home()
    (first,) = [v for a, _, v in buttons(view) if a == "kontext_reroll"]
    await bot.click("kontext_reroll", first)
    notice = await bot.opened(2)  # the first view was the edit's modal
    said = notice["blocks"][0]["text"]["text"]
    assert "Queued" in said and f"<#{CHANNEL}>" in said, said
    uploads = await bot.uploaded(2)
    assert uploads[1].channel == CHANNEL
    assert "make it a watercolor" in (uploads[1].initial_comment or "")
    await bot.succeeded(2)
    me = UserRef("slack", TEAM_ID, USER)
    jobs = await bot.core.service.job_history(me, me, limit=5)
    assert jobs[0].seed != jobs[1].seed, "a re-roll is a new seed"
    assert (await bot.core.service.credits(me)).balance == 960


async def test_reroll_of_an_unknown_job_says_so_and_charges_nothing(bot: Bot) -> None:
    await bot.open_home()
    await bot.click("kontext_reroll", "no-such-job")
    notice = await bot.opened(1)
    assert "can't re-roll" in notice["blocks"][0]["text"]["text"]
    assert bot.provider.creates == []
    me = UserRef("slack", TEAM_ID, USER)
    assert (await bot.core.service.credits(me)).balance == 1200


async def test_an_admin_sees_the_budget_and_no_link_without_a_dashboard(bot: Bot) -> None:
    await bot.edit("make it a watercolor", 1)
    view = await bot.open_home(ADMIN)
    texts = section_texts(view)
    budget = next(t for t in texts if "credits.budget" in t)
    assert "120 credits spent today" in budget and "Today (UTC): 120 credits spent." in budget
    assert "kontext_dashboard" not in [a for a, _, _ in buttons(view)]
    assert DASHBOARD_URL not in json.dumps(view)


@pytest.fixture
async def dashboard_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    dashboard = {
        "enabled": True,
        "port": 0,
        "password": "secret-dashboard-password",
        "public_url": DASHBOARD_URL,
    }
    async for served in serve(tmp_path, fake, dashboard=dashboard, credits={"budget": 6000}):
        yield served


async def test_an_admin_gets_the_dashboard_link_when_configured(dashboard_bot: Bot) -> None:
    bot = dashboard_bot
    view = await bot.open_home(ADMIN)
    link = next(
        e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"] if e.get("url")
    )
    assert link["url"] == DASHBOARD_URL and link["text"]["text"] == "Open the dashboard"
    budget = next(t for t in section_texts(view) if "left" in t)
    assert budget.startswith("*0* of *6,000* credits spent today, 6,000 left."), budget
    # Others never see it.
    assert DASHBOARD_URL not in json.dumps(await bot.open_home(USER))


async def test_a_korean_user_gets_the_home_tab_in_korean(bot: Bot) -> None:
    bot.slack.user_locales[USER] = "ko-KR"
    view = await bot.open_home()
    assert view["blocks"][0]["text"]["text"] == "Kontext: FLUX로 이미지 편집"
    texts = section_texts(view)
    assert texts[0].startswith("잔액은 *1200 크레딧*입니다"), texts[0]
    assert "*새 편집*" in texts[1], texts[1]
    assert buttons(view)[0][1] == "새 편집"


async def test_a_refused_publish_is_logged_and_the_listener_carries_on(bot: Bot) -> None:
    bot.slack.fail_methods["views.publish"] = ["invalid_arguments"]
    with structlog.testing.capture_logs() as logs:
        await bot.open_home()
    assert USER not in bot.slack.home_views
    assert {"event": "slack call failed", "method": "views.publish"}.items() <= next(
        e for e in logs if e.get("method") == "views.publish"
    ).items()
    # The next opening works: nothing was left broken.
    assert (await bot.open_home())["type"] == "home"


async def test_more_history_than_fits_stays_within_slacks_limits(bot: Bot) -> None:
    for n in range(1, 9):
        await bot.edit(f"a rather long prompt that goes on {n} " + "and on " * 8, n)
    view = await bot.open_home()
    assert USER in bot.slack.home_views, "the fake took it: every Block Kit limit held"
    assert len(view["blocks"]) <= VIEW_MAX_BLOCKS
    assert len(thumbnails(view)) == 5, "the five latest, not all eight"


async def test_edit_again_from_home_edits_the_result_where_it_was(bot: Bot) -> None:
    await bot.edit("make it a watercolor", 1)
    (first,) = await bot.uploaded(1)
    view = await bot.open_home()
    (job_id,) = [v for a, _, v in buttons(view) if a == "kontext_edit_again"]
    await bot.click("kontext_edit_again", job_id)
    modal = await bot.opened(2)
    blocks = {b.get("block_id") for b in modal["blocks"]}
    assert "image" not in blocks and "channel" not in blocks, "the result is the image"
    assert json.loads(modal["private_metadata"])["channel"] == CHANNEL
    await bot.submit_modal(modal, "now make it night")
    uploads = await bot.uploaded(2)
    assert uploads[1].channel == CHANNEL
    assert "now make it night" in (uploads[1].initial_comment or "")
    # The second edit's input was the first one's posted result.
    assert bot.provider.creates[1].file_bytes == first.data


async def test_edit_again_of_an_unknown_job_says_the_image_is_gone(bot: Bot) -> None:
    await bot.open_home()
    await bot.click("kontext_edit_again", "no-such-job")
    notice = await bot.opened(1)
    assert notice["type"] == "modal" and "submit" not in notice
    assert notice["blocks"][0]["text"]["text"] == (
        "That result's image is gone, so there is nothing to edit."
    )
    assert bot.provider.creates == []
