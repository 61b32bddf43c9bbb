"""Presets and a result's buttons on Slack (issue 27), through the real slack_bolt and
slack_sdk against the fake Slack and the fake core.today: the "Done" status line of a
result carries Re-roll, Edit again, the listed presets and the More… select; a click
is a new job whose input is that result's file and whose prompt is the preset's
instruction, paid by the one who clicks; the modal offers the presets as a select."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config.presets import SHIPPED_PRESETS
from bot.domain import UserRef
from tests.fakes.coretoday import FakeCoreToday
from tests.fakes.replicate import FakeReplicate
from tests.fakes.slack import BOT_USER_ID, TEAM_ID
from tests.support import HANG_GUARD_SECONDS, TWO_MODELS, png
from tests.test_slack import (
    CHANNEL,
    REPLICATE_KEY,
    UPSCALE_MODELS,
    USER,
    Bot,
    balance,
    message_event,
    responses,
    serving,
    submission,
)

BOB = "U0BOB"


@pytest.fixture
async def bot(tmp_path: Path, fake: FakeCoreToday) -> AsyncIterator[Bot]:
    async for served in serving("http", tmp_path, fake):
        yield served


def shipped_prompt(name: str) -> str:
    """A shipped preset's instruction with nothing added, as the provider gets it."""
    template = next(str(p["prompt"]) for p in SHIPPED_PRESETS if p["name"] == name)
    return " ".join(template.replace("{prompt}", "").split())


async def result_line(bot: Bot, ts: str) -> tuple[Any, dict[str, Any]]:
    """A mention with an image at ``ts``, its posted result, and its status message once
    that carries the result's buttons."""
    file = bot.slack.add_file("portrait.png", png((10, 200, 10)))
    await bot.event(
        message_event("app_mention", ts, f"<@{BOT_USER_ID}> make her smile", [file]), ts
    )
    (result,) = await bot.uploaded()
    line = await buttons_line(bot)
    # Where the result is gets stored right after the post (the Done line may come
    # first); a click before that finds no image and says so.
    job_id = str(actions_of(line)["block_id"]).removeprefix("kontext_result:")
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while (job := await bot.core.service.job(job_id)) is None or not job.delivered:
            await asyncio.sleep(0.02)
    return result, line


async def buttons_line(bot: Bot) -> dict[str, Any]:
    """The first status message that carries a result's buttons, once it does."""
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while True:
            lines = [
                m
                for m in bot.slack.messages_in(CHANNEL)
                if m.get("metadata")
                # The result's buttons, not the Cancel of a job still running.
                and any(is_result_actions(b) for b in m.get("blocks") or [])
            ]
            if lines:
                return lines[0]
            await asyncio.sleep(0.02)


def is_result_actions(block: dict[str, Any]) -> bool:
    return block.get("type") == "actions" and str(block.get("block_id")).startswith(
        "kontext_result:"
    )


def actions_of(message: dict[str, Any]) -> dict[str, Any]:
    return next(b for b in message["blocks"] if is_result_actions(b))


def click(
    bot: Bot, message: dict[str, Any], element: dict[str, Any], user: str, n: int, **chosen: Any
) -> dict[str, Any]:
    """The block_actions payload Slack sends for ``element`` of ``message``
    (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload)."""
    block = actions_of(message)
    action = {
        "type": element["type"],
        "action_id": element["action_id"],
        "block_id": block.get("block_id", "b"),
        "action_ts": f"{time.time():.6f}{n}",
        **({"value": element["value"]} if "value" in element else {}),
        **chosen,
    }
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID},
        "user": {"id": user},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": CHANNEL},
        "message": message,
        "trigger_id": f"t-result-{n}",
        "actions": [action],
        "response_url": f"{bot.slack.base_url}/response/result-{n}",
    }


def button(message: dict[str, Any], text: str) -> dict[str, Any]:
    return next(
        e
        for e in actions_of(message)["elements"]
        if e["type"] == "button" and e["text"]["text"].endswith(text)
    )


async def creates(bot: Bot, count: int) -> None:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while len(bot.provider.creates) < count:
            await asyncio.sleep(0.02)


async def test_the_done_line_carries_the_buttons_and_zoom_out_edits_that_result(bot: Bot) -> None:
    ts = f"{time.time() - 60:.6f}"
    result, line = await result_line(bot, ts)
    elements = actions_of(line)["elements"]
    labels = [
        e["text"]["text"] if e["type"] == "button" else e["placeholder"]["text"] for e in elements
    ]
    # [results] buttons' default in its order; Upscale is not shown (no upscaler here).
    assert labels == [
        "🎲 Re-roll",
        "✏️ Edit again",
        "🌱 Vary (subtle)",
        "🔍 Zoom out",
        "⬛ Make square",
        "🗑️ Delete",
        "More…",
    ]
    more = elements[-1]
    assert [o["value"] for o in more["options"]][:2] == ["zoom-out", "make-square"]

    await bot.interact(click(bot, line, button(line, "Zoom out"), BOB, 1))
    await creates(bot, 2)
    (answer,) = await responses(bot, 1)
    assert answer.get("response_type") == "ephemeral"
    assert "120 credits reserved" in answer["text"], "the cost is said to the clicker"
    created = bot.provider.creates[1]
    assert created.input is not None
    assert created.input["prompt"] == shipped_prompt("zoom-out")
    assert created.input["aspect_ratio"] == "match_input_image"
    # The result's file, not the original upload, is the image edited.
    assert created.file_bytes == result.data
    uploads = await bot.uploaded(2)
    assert uploads[1].thread_ts == ts, "posted in the result's thread"
    assert await balance(bot) == 1200 - 120
    bob = await bot.core.service.credits(UserRef("slack", TEAM_ID, BOB))
    assert bob.balance == 1200 - 120, "the one who clicks pays"


async def test_the_more_select_applies_any_preset_and_re_roll_repeats_the_edit(bot: Bot) -> None:
    result, line = await result_line(bot, f"{time.time() - 60:.6f}")
    more = actions_of(line)["elements"][-1]
    assert more["type"] == "static_select"
    chosen = {
        "selected_option": {"text": {"type": "plain_text", "text": "Colorize"}, "value": "colorize"}
    }
    await bot.interact(click(bot, line, more, USER, 1, **chosen))
    await creates(bot, 2)
    colorized = bot.provider.creates[1]
    assert colorized.input is not None and colorized.input["prompt"] == shipped_prompt("colorize")
    assert colorized.file_bytes == result.data

    await bot.interact(click(bot, line, button(line, "Re-roll"), USER, 2))
    await creates(bot, 3)
    again = bot.provider.creates[2]
    assert again.input is not None and again.input["prompt"] == "make her smile"
    assert again.file_bytes != result.data, "a re-roll edits the original again"
    assert await balance(bot) == 1200 - 3 * 120


async def test_a_removed_preset_or_an_unknown_pick_is_answered_privately_and_free(bot: Bot) -> None:
    _, line = await result_line(bot, f"{time.time() - 60:.6f}")
    retired = {**button(line, "Zoom out"), "action_id": "kontext_preset:retired"}
    await bot.interact(click(bot, line, retired, USER, 1))
    more = actions_of(line)["elements"][-1]
    unknown = {"selected_option": {"text": {"type": "plain_text", "text": "x"}, "value": "sparkle"}}
    await bot.interact(click(bot, line, more, USER, 2, **unknown))
    first, second = await responses(bot, 2)
    assert "no longer set up" in first["text"] and "no longer set up" in second["text"]
    assert all(r.get("response_type") == "ephemeral" for r in (first, second))
    assert len(bot.provider.creates) == 1 and await balance(bot) == 1200 - 120


async def test_the_modal_offers_the_presets_and_a_preset_needs_no_prompt(bot: Bot) -> None:
    await bot.command("")
    view = await bot.opened_view()
    block = next(b for b in view["blocks"] if b["block_id"] == "preset")
    assert [o["value"] for o in block["element"]["options"]][:3] == [
        "zoom-out",
        "make-square",
        "vary-subtle",
    ]
    prompt_block = next(b for b in view["blocks"] if b["block_id"] == "prompt")
    assert prompt_block["optional"], "with a preset the prompt may stay empty"
    file = bot.slack.add_file("room.png", png())
    payload = submission(bot, view, prompt="", file=file)
    payload["view"]["state"]["values"]["preset"] = {
        "value": {"selected_option": {"value": "make-square"}}
    }
    await bot.interact(payload)
    await creates(bot, 1)
    (created,) = bot.provider.creates
    assert created.input is not None
    assert created.input["prompt"] == shipped_prompt("make-square")
    assert created.input["aspect_ratio"] == "1:1"
    # A result made from the form has the same buttons on its status line.
    await bot.uploaded()
    line = await buttons_line(bot)
    job = await bot.core.service.job_for_key(f"slack:{TEAM_ID}:view:{view['id']}")
    assert job is not None and button(line, "Zoom out")["value"] == job.id


async def test_without_presets_there_is_no_select_and_buttons_follow_the_config(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """``[results] buttons`` chooses the buttons in order; a preset removed with
    ``enabled = false`` is in neither the buttons nor the More… select."""
    presets = [{"name": "colorize", "enabled": False}]
    results = {"buttons": ["zoom-out", "reroll"]}
    async for bot in serving("http", tmp_path, fake, presets=presets, results=results):
        _, line = await result_line(bot, f"{time.time() - 60:.6f}")
        elements = actions_of(line)["elements"]
        assert [e["action_id"] for e in elements] == [
            "kontext_preset:zoom-out",
            "kontext_result_reroll",
            "kontext_more",
        ]
        assert "colorize" not in json.dumps(elements[-1]["options"])


async def test_delete_removes_the_result_for_its_owner_and_refuses_anyone_else(bot: Bot) -> None:
    _, line = await result_line(bot, f"{time.time() - 60:.6f}")
    delete = button(line, "Delete")
    assert delete["style"] == "danger"
    # Where the result is gets stored right after the post (the Done line may be first).
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while (job := await bot.core.service.job(delete["value"])) is None or not job.delivered:
            await asyncio.sleep(0.02)
    assert job.delivered is not None
    file_id = str(job.delivered["file"])

    await bot.interact(click(bot, line, delete, BOB, 1))
    (refusal,) = await responses(bot, 1)
    assert "Only the person who asked for this image or an admin" in refusal["text"]
    assert refusal.get("response_type") == "ephemeral"
    assert bot.slack.deleted_files == []

    await bot.interact(click(bot, line, delete, USER, 2))
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not bot.slack.deleted_files:
            await asyncio.sleep(0.02)
        while any(b.get("type") == "actions" for b in buttons_now(bot, line)):
            await asyncio.sleep(0.02)
    assert bot.slack.deleted_files == [file_id]
    after = await bot.core.service.job(job.id)
    assert after is not None and not (after.delivered or {}).get("file"), "history forgets it"
    assert len(bot.provider.creates) == 1 and await balance(bot) == 1200 - 120, "free"


def buttons_now(bot: Bot, line: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks the status message ``line`` has now."""
    now = next(m for m in bot.slack.messages_in(CHANNEL) if m["ts"] == line["ts"])
    return list(now.get("blocks") or [])


async def test_a_presets_own_model_is_what_its_button_costs_and_the_answer_says_so(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    """A preset with ``model = "max"`` costs max's 240 whatever the result was made
    with; its operator-written label is shown as written."""
    presets = [
        {
            "name": "ink",
            "prompt": "Redraw as ink. Keep the subject. {prompt}",
            "model": "max",
            "button": "Ink it",
        }
    ]
    results = {"buttons": ["ink", "reroll"]}
    async for bot in serving(
        "http", tmp_path, fake, models=TWO_MODELS, presets=presets, results=results
    ):
        result, line = await result_line(bot, f"{time.time() - 60:.6f}")
        ink = button(line, "Ink it")
        assert ink["text"]["text"] == "Ink it"
        await bot.interact(click(bot, line, ink, USER, 1))
        await creates(bot, 2)
        (answer,) = await responses(bot, 1)
        assert "240 credits reserved" in answer["text"]
        created = bot.provider.creates[1]
        assert (created.model or "").endswith("flux-kontext-max")
        assert (
            created.input is not None
            and created.input["prompt"] == "Redraw as ink. Keep the subject."
        )
        assert created.file_bytes == result.data
        assert await balance(bot) == 1200 - 120 - 240


async def test_the_typed_preset_opens_the_form_with_its_instruction_and_ratio(bot: Bot) -> None:
    """``/kontext --preset make-square at dusk``: a slash command carries no file, so the
    form opens with the preset's instruction (the words added) and its ratio filled in;
    an unknown preset is answered in the command's acknowledgement, no form opened."""
    await bot.command("--preset make-square at dusk")
    view = await bot.opened_view()
    blocks = {b["block_id"]: b for b in view["blocks"]}
    prompt = blocks["prompt"]["element"]["initial_value"]
    assert prompt == " ".join(
        next(str(p["prompt"]) for p in SHIPPED_PRESETS if p["name"] == "make-square")
        .replace("{prompt}", "at dusk")
        .split()
    )
    assert blocks["ratio"]["element"]["initial_option"]["value"] == "1:1"
    file = bot.slack.add_file("room.png", png())
    await bot.interact(submission(bot, view, prompt=prompt, file=file, ratio="1:1"))
    await creates(bot, 1)
    (created,) = bot.provider.creates
    assert created.input is not None and created.input["prompt"] == prompt

    answer = await bot.command("--preset sparkle")
    assert "There is no preset named 'sparkle'" in answer.text
    assert len(bot.slack.calls_to("views.open")) == 1


async def test_with_an_upscaler_the_upscale_button_makes_that_result_larger_at_its_cost(
    tmp_path: Path,
) -> None:
    async with FakeReplicate() as replicate:
        provider = {"name": "replicate", "api_key": REPLICATE_KEY}
        async for bot in serving(
            "http", tmp_path, replicate, provider=provider, models=UPSCALE_MODELS
        ):
            ts = f"{time.time() - 60:.6f}"
            result, line = await result_line(bot, ts)
            labels = [e["text"]["text"] for e in actions_of(line)["elements"][:6]]
            # The default [results] buttons: Upscale shows once an upscaler is configured.
            assert "🔎 Upscale" in labels
            spent = await balance(bot)
            await bot.interact(click(bot, line, button(line, "Upscale"), BOB, 1))
            await creates(bot, 2)
            (answer,) = await responses(bot, 1)
            assert "10 credits reserved" in answer["text"], "the upscaler's own cost is said"
            created = bot.provider.creates[1]
            assert created.model == "nightmareai/real-esrgan"
            assert created.input == {"scale": 2, "face_enhance": False}
            # The result's file is what is made larger, not the original upload.
            assert created.file_bytes == result.data
            uploads = await bot.uploaded(2)
            assert uploads[1].thread_ts == ts, "posted in the result's thread"
            bob = await bot.core.service.credits(UserRef("slack", TEAM_ID, BOB))
            assert bob.balance == 1200 - 10, "the one who clicks pays the upscaler's price"
            assert await balance(bot) == spent, "the result's owner pays nothing more"


async def test_without_an_upscaler_no_upscale_button_is_shown(bot: Bot) -> None:
    _result, line = await result_line(bot, f"{time.time() - 60:.6f}")
    ids = [e["action_id"] for e in actions_of(line)["elements"]]
    assert "kontext_result_upscale" not in ids
    assert "kontext_result_reroll" in ids
