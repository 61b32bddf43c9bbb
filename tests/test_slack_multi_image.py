"""Several images and Cancel on Slack (issue 26), through the real slack_bolt/slack_sdk against the
fake Slack and the fake core.today: a mention with three images and ``--model flux2``
is one create whose images are the three files in order (a text file beside them is
left out and named), a thread follow-up with a new file takes the previous result
first, and the modal's file input takes as many files as the models do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.views import cancel_blocks
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.slack import BOT_USER_ID, TEAM_ID
from tests.support import HANG_GUARD_SECONDS, png
from tests.test_slack import (
    CHANNEL,
    USER,
    Bot,
    balance,
    message_event,
    responses,
    serving,
    submission,
)

FLUX2_ID = "black-forest-labs/flux-2-pro"
MODELS: list[dict[str, object]] = [
    {
        "name": "pro",
        "model": "black-forest-labs/flux-kontext-pro",
        "cost_per_image": 120,
        "default": True,
    },
    {"name": "flux2", "model": FLUX2_ID, "cost_per_image": 100, "cost_per_extra_image": 5},
]


@pytest.fixture
async def multi_bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async for served in serving("http", tmp_path, fake, models=MODELS):
        yield served


async def test_a_mention_with_three_images_is_one_create_in_order(multi_bot: Bot) -> None:
    bot = multi_bot
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    files = [bot.slack.add_file(f"p{n}.png", png(c)) for n, c in enumerate(colours)]
    notes = bot.slack.add_file("notes.txt", b"hello", mimetype="text/plain")
    ts = f"{time.time() - 60:.6f}"
    text = f"<@{BOT_USER_ID}> put the jacket from image 2 on the woman in image 3 --model flux2"
    await bot.event(message_event("app_mention", ts, text, [files[0], notes, *files[1:]]), "Ev1")
    (result,) = await bot.uploaded()
    (create,) = bot.provider.creates
    assert create.model == FLUX2_ID
    assert [f[0] for f in create.files] == ["file:input_images"] * 3
    assert [f[3] for f in create.files] == [png(c) for c in colours]
    # The acknowledgement is the job's status message in the thread.
    (status,) = [c for c in bot.slack.calls_to("chat.postMessage") if c.args["channel"] == CHANNEL]
    ack = status.args["text"]
    assert "3 images): 110 credits reserved" in ack
    assert "Left out (not an image): 'notes.txt'" in ack
    assert await balance(bot) == 1200 - 110

    # A follow-up in the thread with a file of its own: the result first, then the file.
    hat = bot.slack.add_file("hat.png", png((250, 250, 0)))
    follow = message_event(
        "message",
        f"{time.time() + 1:.6f}",
        f"<@{BOT_USER_ID}> add the hat from image 2 --model flux2",
        [hat],
        thread_ts=ts,
    )
    await bot.event(follow, "Ev2")
    await bot.uploaded(2)
    second = bot.provider.creates[1]
    assert [f[3] for f in second.files] == [result.data, png((250, 250, 0))]


async def test_nine_images_are_refused_free_naming_the_limit(multi_bot: Bot) -> None:
    bot = multi_bot
    files = [bot.slack.add_file(f"p{n}.png", png((n * 20, 0, 0))) for n in range(9)]
    ts = f"{time.time() - 60:.6f}"
    await bot.event(
        message_event("app_mention", ts, f"<@{BOT_USER_ID}> nine --model flux2", files), "Ev1"
    )
    (said,) = await bot.ephemerals()
    assert "flux2 takes at most 8 images; you gave 9" in said
    assert bot.provider.creates == [] and await balance(bot) == 1200


async def test_the_modal_file_input_takes_as_many_files_as_the_models(multi_bot: Bot) -> None:
    bot = multi_bot
    await bot.command("")
    view = await bot.opened_view()
    block = next(b for b in view["blocks"] if b["block_id"] == "image")
    assert block["element"]["max_files"] == 8


# -- Cancel on the acknowledgement (issue 26) -----------------------------------------------


def cancel_click(bot: Bot, job_id: str, user: str, n: int) -> dict[str, Any]:
    """The block_actions payload Slack sends when the ephemeral's Cancel is pressed."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "is_ephemeral": True},
        "trigger_id": f"t-cancel-{n}",
        "actions": [
            {"type": "button", "action_id": "kontext_cancel", "value": job_id, "block_id": "b"}
        ],
        "response_url": f"{bot.slack.base_url}/response/cancel-{n}",
    }


async def test_cancel_from_the_acknowledgement_at_the_provider(multi_bot: Bot) -> None:
    bot = multi_bot
    bot.provider.script.outcome = "never"
    await bot.command("make it ink")
    view = await bot.opened_view()
    file = bot.slack.add_file("cat.png", png())
    await bot.interact(submission(bot, view, prompt="make it ink", file=file))
    (queued,) = await responses(bot, 1)
    assert "Queued" in queued["text"]
    assert "Cancel" in json.dumps(queued.get("blocks")), "the acknowledgement has Cancel"
    job = await bot.core.service.job_for_key(f"slack:{TEAM_ID}:view:{view['id']}")
    assert job is not None
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not bot.provider.creates:
            await asyncio.sleep(0.01)
    await bot.interact(cancel_click(bot, job.id, "U0STRANGER", 1))
    await bot.interact(cancel_click(bot, job.id, USER, 2))
    answers = (await responses(bot, 3))[1:]
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        done = await bot.core.runner.wait_for(job.id)
    assert "Only the person who asked for this edit, or an admin" in answers[0]["text"]
    assert "Asked the image service to stop" in answers[1]["text"]
    assert all(a.get("response_type") == "ephemeral" for a in answers)
    assert done.state.value == "canceled" and bot.provider.cancels == 1
    assert await balance(bot) == 1200, "refunded once"
    assert [u for u in bot.slack.uploads.values() if u.channel] == [], "nothing posted"


async def test_a_mentions_status_message_has_cancel_until_the_job_ends(multi_bot: Bot) -> None:
    bot = multi_bot
    bot.provider.script.outcome = "never"
    file = bot.slack.add_file("cat.png", png())
    ts = f"{time.time() - 60:.6f}"
    await bot.event(message_event("app_mention", ts, f"<@{BOT_USER_ID}> make it ink", [file]), "E")
    job = await bot.core.service.job_for_key(f"slack:{TEAM_ID}:msg:{CHANNEL}:{ts}")
    assert job is not None

    def status() -> dict[str, Any] | None:
        for message in bot.slack.messages_in(CHANNEL):
            if (message.get("metadata") or {}).get("event_payload", {}).get("job_id") == job.id:
                return message
        return None

    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not ((found := status()) and "Cancel" in json.dumps(found.get("blocks"))):
            await asyncio.sleep(0.01)
        while not bot.provider.creates:
            await asyncio.sleep(0.01)
    await bot.interact(cancel_click(bot, job.id, USER, 1))
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        done = await bot.core.runner.wait_for(job.id)
        while (found := status()) is not None and found.get("blocks"):
            await asyncio.sleep(0.01)
    assert done.state.value == "canceled" and bot.provider.cancels == 1
    assert await balance(bot) == 1200
    assert found is not None and "blocks" not in found, "the ended job's line has no Cancel"


async def test_the_fake_slack_drops_blocks_on_a_text_only_update() -> None:
    """chat.update: blocks given replace the old; text without blocks removes them;
    as https://api.slack.com/methods/chat.update documents its ``blocks`` argument."""
    from slack_sdk.web.async_client import AsyncWebClient

    from tests.fakes.slack import BOT_TOKEN, FakeSlack

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        blocks = cancel_blocks("Queued", "0" * 32)
        posted = await client.chat_postMessage(channel=CHANNEL, text="Queued", blocks=blocks)

        def stored() -> dict[str, Any]:
            return next(m for m in slack.messages_in(CHANNEL) if m["ts"] == posted["ts"])

        assert stored()["blocks"] == blocks
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Editing", blocks=blocks)
        assert stored()["blocks"] == blocks
        await client.chat_update(channel=CHANNEL, ts=posted["ts"], text="Done")
        assert "blocks" not in stored() and stored()["text"] == "Done"
