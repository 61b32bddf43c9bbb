"""Upscale on Discord (issue 27): the ``upscale`` option of ``/kontext`` through the real
discord.py against the fake Discord, served by the fake Replicate's real-esrgan, and a
result over the interaction's ``attachment_size_limit`` fitted and said so."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.app import Core
from bot.domain import UserRef
from tests.fakes.discord import BOT_TOKEN, CHANNEL_ID, GUILD_ID, FakeDiscord
from tests.fakes.replicate import DEFAULT_KEY, FakeReplicate
from tests.support import HANG_GUARD_SECONDS, discord_core, make_settings, png

ALICE = "5000000000000000001"
MODELS: list[dict[str, object]] = [
    {
        "name": "pro",
        "model": "black-forest-labs/flux-kontext-pro",
        "cost_per_image": 120,
        "default": True,
    },
    {
        "name": "upscale",
        "kind": "upscale",
        "model": "nightmareai/real-esrgan",
        "providers": ["replicate"],
        "cost_per_image": 10,
    },
]


async def until(check: Callable[[], Any]) -> Any:
    async with asyncio.timeout(HANG_GUARD_SECONDS):
        while not (value := check()):
            await asyncio.sleep(0.02)
    return value


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Core, FakeDiscord, FakeReplicate]]:
    async with FakeReplicate() as replicate, FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        settings = make_settings(
            tmp_path,
            replicate.base_url,
            provider={"name": "replicate", "api_key": DEFAULT_KEY},
            models=MODELS,  # type: ignore[arg-type]
            discord={
                "enabled": True,
                "token": BOT_TOKEN,
                "api_base_url": discord.api_url,
                "guild_ids": [int(GUILD_ID)],
                "progress_interval_seconds": 0.2,
            },
            jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        )
        core, adapter = await discord_core(settings)
        assert core.runner is not None
        core.runner.set_limits(replace(core.runner.limits, idle_scan_seconds=0.1))
        await core.start()
        await adapter.start()
        yield core, discord, replicate
        await adapter.stop()
        await core.close()


def results(discord: FakeDiscord) -> list[dict[str, Any]]:
    return [
        m
        for m in discord.channel_messages(CHANNEL_ID)
        if m["author"]["id"] != ALICE and m["attachments"] and m["components"]
    ]


async def test_kontext_upscale_option_posts_a_fitted_larger_image(
    world: tuple[Core, FakeDiscord, FakeReplicate],
) -> None:
    core, discord, replicate = world
    await until(lambda: discord.commands.get(GUILD_ID))
    kontext = next(c for c in discord.commands[GUILD_ID] if c["name"] == "kontext")
    options = {o["name"]: o for o in kontext["options"]}
    assert [c["value"] for c in options["upscale"]["choices"]] == [2, 4]
    assert not options["prompt"].get("required")  # an upscale needs none
    assert "model" not in options  # one edit model: nothing to choose
    assert len(options) <= 25  # Discord's limit on a command's options

    replicate.script.noisy_output = True  # 640x480 of noise: about 900 kB as PNG
    original = discord._interaction  # the limit comes with each interaction

    def small_limit(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = original(*args, **kwargs)
        payload["attachment_size_limit"] = 200 * 1024
        return payload

    discord._interaction = small_limit  # type: ignore[method-assign]
    image = discord.upload(png(size=(320, 240)), "cat.png", "image/png")
    await discord.slash_command("kontext", {"upscale": 2}, user_id=ALICE, attachment=image)
    (result,) = await until(lambda: results(discord))
    (create,) = replicate.creates
    assert create.model == "nightmareai/real-esrgan"
    assert create.input == {"scale": 2, "face_enhance": False}
    posted = discord.attachment_bytes(result["attachments"][0])
    assert len(posted) <= 200 * 1024
    with Image.open(io.BytesIO(posted)) as img:
        assert img.format == "JPEG"
        shown = img.size
    assert "over Discord's 0.2 MB limit" in result["content"]
    assert f"{shown[0]}×{shown[1]}" in result["content"]
    assert result["embeds"][0]["description"] == "Upscaled 2x"
    balance = (await core.service.credits(UserRef("discord", GUILD_ID, ALICE))).balance
    assert balance == 1200 - 10


async def test_kontext_without_prompt_or_upscale_is_refused_free(
    world: tuple[Core, FakeDiscord, FakeReplicate],
) -> None:
    _core, discord, replicate = world
    await until(lambda: discord.commands.get(GUILD_ID))
    image = discord.upload(png(), "cat.png", "image/png")
    asked = await discord.slash_command("kontext", {}, user_id=ALICE, attachment=image)
    await until(lambda: asked.callbacks)
    assert "Write what to change" in asked.callbacks[0]["data"]["content"]
    assert replicate.creates == []


async def test_a_results_upscale_button_makes_that_result_larger_at_its_cost(
    world: tuple[Core, FakeDiscord, FakeReplicate],
) -> None:
    core, discord, replicate = world
    image = discord.upload(png(size=(64, 48)), "cat.png", "image/png")
    await discord.slash_command(
        "kontext", {"prompt": "make it a watercolor"}, user_id=ALICE, attachment=image
    )
    (first,) = await until(lambda: results(discord))
    labels = [c.get("label") for row in first["components"] for c in row["components"]]
    assert "Upscale" in labels, "shown once an upscale model is configured"
    click = await discord.click(first, "Upscale", user_id=ALICE)
    await until(lambda: len(replicate.creates) == 2)
    await until(lambda: click.callbacks)
    assert "10 credits reserved" in click.callbacks[0]["data"]["content"], "its cost is said"
    edit, upscale = replicate.creates
    assert edit.model == "black-forest-labs/flux-kontext-pro"
    assert upscale.model == "nightmareai/real-esrgan"
    assert upscale.input == {"scale": 2, "face_enhance": False}
    # The posted result, not the original upload, is what is made larger.
    assert upscale.file_bytes == discord.attachment_bytes(first["attachments"][0])
    await until(lambda: len(results(discord)) == 2)
    balance = (await core.service.credits(UserRef("discord", GUILD_ID, ALICE))).balance
    assert balance == 1200 - 120 - 10
