"""The demo provider (``provider.name = "demo"``): the README's first command through the
real CLI on a machine without any key, its looks, progress and injected failures."""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest
from PIL import Image

from bot.chat.texts import DEMO_NOTE
from bot.domain import EditOptions
from bot.errors import ProviderUnavailable
from bot.providers.base import InputImage, PredictionState, ProviderRequest
from bot.providers.demo import DemoProvider, looks_for, render, sample_image
from tests.support import ROOT, FakeClock, cat_png, png, run


def fresh_machine(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No KONTEXT_ variable but the knobs a test needs: as on a machine that never saw
    the bot (no config file, no key; the database lands in the working directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    # A demo job takes 2 s by default; a test does not wait on the wall clock for it.
    env.update(KONTEXT_PROVIDER__DEMO_SECONDS="0", PYTHONPATH=str(ROOT), **extra)
    return env


def readmes_first_command() -> list[str]:
    """The arguments of ``kontext-bot`` in the README's first code block."""
    readme = (ROOT / "README.md").read_text()
    first = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    return shlex.split(first.rsplit("kontext-bot ", 1)[1])


async def test_the_readmes_first_command_needs_no_key(tmp_path: Path) -> None:
    args = readmes_first_command()
    assert args == ["console", "--demo", "make it a watercolor"]
    result = await run(args, fresh_machine(tmp_path), tmp_path)
    assert result.code == 0, result.stderr
    written = Path(result.stdout.strip())
    assert written.parent == tmp_path and written.name.startswith("sample-kontext-")
    with Image.open(written) as image:
        image.load()
        assert image.size == Image.open(io.BytesIO(sample_image())).size
    # The input was the picture shipped with the bot, put next to the user.
    assert (tmp_path / "sample.png").read_bytes() == sample_image()
    assert DEMO_NOTE in result.stderr
    assert "120 credits" in result.stderr and "balance: 1080 credits" in result.stderr
    assert "api_key" not in result.stderr


async def test_demo_edits_the_given_image_in_any_config(tmp_path: Path) -> None:
    """--demo overrides a config that names a paid provider without a key."""
    config = tmp_path / "config.toml"
    config.write_text('[provider]\nname = "bfl"\n')
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "out.jpg"
    result = await run(
        [
            "console",
            "--demo",
            "--config",
            str(config),
            "--image",
            str(image),
            "--out",
            str(out),
            "night",
            "--format",
            "jpg",
        ],
        fresh_machine(tmp_path),
        tmp_path,
    )
    assert result.code == 0, result.stderr
    with Image.open(out) as written:
        assert written.format == "JPEG" and written.size == (96, 64)


@pytest.mark.parametrize(
    ("failure", "code", "words"),
    [
        ("moderation", 1, "safety filter refused"),
        ("failed", 3, "could not finish"),
        ("submit", 3, "demo image service is down"),
    ],
)
async def test_injected_failures_are_refunded(
    tmp_path: Path, failure: str, code: int, words: str
) -> None:
    env = fresh_machine(
        tmp_path, KONTEXT_PROVIDER__NAME="demo", KONTEXT_PROVIDER__DEMO_FAIL=failure
    )
    image = cat_png(tmp_path / "cat.png")
    result = await run(["console", "--image", str(image), "make it a sketch"], env, tmp_path)
    assert result.code == code, result.stderr
    assert words in result.stderr and "refunded" in result.stderr
    assert "balance: 1200 credits" in result.stderr


async def test_text_to_image_draws_a_card_of_the_asked_ratio(tmp_path: Path) -> None:
    env = fresh_machine(tmp_path, KONTEXT_PROVIDER__NAME="demo")
    out = tmp_path / "card.png"
    result = await run(
        ["console", "--out", str(out), "a lighthouse", "--ar", "16:9"], env, tmp_path
    )
    assert result.code == 0, result.stderr
    with Image.open(out) as card:
        assert card.size == (768, 432)


# -- the provider on its own ------------------------------------------------------------


def request(prompt: str, seed: int = 7, with_image: bool = True) -> ProviderRequest:
    images = (InputImage(png((40, 120, 200)), "image/png", "in.png"),) if with_image else ()
    return ProviderRequest(prompt, EditOptions(seed=seed), images)


def test_looks_come_from_the_prompts_words() -> None:
    assert [look.name for look in looks_for("Make it a WATERCOLOR at night")] == [
        "watercolor",
        "night",
    ]
    # Whole words only: "nice" is not "ice".
    assert [look.name for look in looks_for("add a nice hat")] == ["poster"]


def test_the_same_request_gives_the_same_bytes_and_looks_differ() -> None:
    assert render(request("sketch")) == render(request("sketch"))
    assert render(request("sketch")) != render(request("warm"))
    assert render(request("a card", with_image=False)) != render(
        request("a card", seed=8, with_image=False)
    )


async def test_a_job_runs_for_demo_seconds_with_progress() -> None:
    clock = FakeClock(0.0)
    provider = DemoProvider(seconds=8.0, clock=clock)
    started = await provider.submit(request("mono"), idempotency_key="k1")
    assert started.state == PredictionState.PENDING
    clock.advance(4.0)
    running = await provider.status(started.id)
    assert running.state == PredictionState.RUNNING and running.progress == (5, 8)
    clock.advance(4.0)
    done = await provider.status(started.id)
    assert done.state == PredictionState.SUCCEEDED
    data = await provider.fetch_output(done.output_urls[0], max_bytes=10_000_000)
    assert data == render(request("mono"))
    with pytest.raises(ProviderUnavailable):
        await provider.fetch_output(done.output_urls[0], max_bytes=10)


async def test_cancel_unknown_jobs_and_every_nth_failure() -> None:
    provider = DemoProvider(seconds=0.0, fail="moderation", fail_every=2)
    first = await provider.submit(request("warm"), idempotency_key="a")
    second = await provider.submit(request("warm"), idempotency_key="b")
    assert first.state == PredictionState.SUCCEEDED
    assert second.state == PredictionState.MODERATED
    waiting = DemoProvider(seconds=60.0, clock=FakeClock(0.0))
    job = await waiting.submit(request("cold"), idempotency_key="c")
    await waiting.cancel(job.id)
    assert (await waiting.status(job.id)).state == PredictionState.CANCELED
    # A restart forgets demo jobs: the pipeline fails (and refunds) them.
    assert (await DemoProvider().status(job.id)).state == PredictionState.FAILED


# -- end to end on the platforms' fakes: the caption says "demo" -------------------------

DEMO = {"name": "demo", "demo_seconds": 0}


def has_the_demo_band(data: bytes) -> bool:
    """The result's bottom rows are the black band with the yellow DEMO label."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        band = [rgb.getpixel((x, rgb.height - 2)) for x in range(rgb.width)]
    return all(pixel == (0, 0, 0) for pixel in band)


async def test_a_demo_result_on_slack_says_demo(tmp_path: Path) -> None:
    from tests.fakes.coretoday import FakeCoreToday
    from tests.test_slack import serving, submission

    async with FakeCoreToday() as fake:
        async for bot in serving("http", tmp_path, fake, provider=DEMO):
            await bot.command("make it a watercolor")
            view = await bot.opened_view()
            file = bot.slack.add_file("cat.png", png())
            await bot.interact(submission(bot, view, prompt="make it a watercolor", file=file))
            (upload,) = await bot.uploaded()
            assert DEMO_NOTE in (upload.initial_comment or "")
            assert has_the_demo_band(upload.data)
            assert fake.creates == []  # nothing reached a paid service


async def test_a_demo_result_on_discord_says_demo(tmp_path: Path) -> None:
    from tests.fakes.coretoday import FakeCoreToday
    from tests.fakes.discord import FakeDiscord
    from tests.test_discord import ALICE, Bot, start_bot

    async with FakeCoreToday() as fake, FakeDiscord() as discord:
        discord.add_user(ALICE, "alice")
        core, adapter, settings = await start_bot(tmp_path, fake, discord, provider=DEMO)
        try:
            posted = await Bot(core, adapter, discord, fake, settings).edited("sketch")
            (embed,) = posted["embeds"]
            fields = {f["name"]: f["value"] for f in embed["fields"]}
            assert fields["Demo"] == DEMO_NOTE
        finally:
            await adapter.stop()
            await core.close()
