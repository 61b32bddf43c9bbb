"""``kontext-bot console`` as a subprocess against the fake core.today."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from PIL import Image

from adapters.console.main import console_user
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.support import (
    HANG_GUARD_SECONDS,
    TWO_MODELS_TOML,
    balance,
    cat_png,
    environment,
    kill_mid_job,
    ledger_kinds,
    run,
    start,
)


async def test_console_edits_an_image_and_charges_120(tmp_path: Path, fake: FakeCoreToday) -> None:
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "result.png"
    result = await run(
        [
            "console",
            "--image",
            str(image),
            "--out",
            str(out),
            "make it a watercolor",
            "--ar",
            "4:3",
        ],
        environment(tmp_path, fake),
        tmp_path,
    )
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    with Image.open(out) as written:
        written.load()
        assert written.size == (24, 16)
    (create,) = fake.creates
    assert create.input is not None
    assert create.input["prompt"] == "make it a watercolor"
    assert create.input["aspect_ratio"] == "4:3"
    assert create.file_bytes == image.read_bytes()
    assert "Queued (position 1)" in result.stderr
    # No --seed: the bot picked one, sent it to the provider and shows it with the result.
    seed = create.input["seed"]
    assert isinstance(seed, int) and f"seed {seed}, 120 credits" in result.stderr
    assert "balance: 1080 credits (9 images)" in result.stderr
    assert DEFAULT_KEY not in result.stderr + result.stdout
    assert await balance(tmp_path, fake) == 1200 - 120


async def test_console_default_output_name(tmp_path: Path, fake: FakeCoreToday) -> None:
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), "make it blue"], environment(tmp_path, fake), tmp_path
    )
    assert result.code == 0, result.stderr
    written = Path(result.stdout.strip())
    assert written.parent == tmp_path and written.name.startswith("cat-kontext-")
    assert written.suffix == ".png" and written.is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["make it a watercolor", "--ar", "7:3"], "16:9"),
        (["make it a watercolor", "--safety", "5"], "at most 2"),
        (["--frobnicate"], "--ar, --seed"),
        ([], "Write what to change"),
    ],
)
async def test_console_user_errors_exit_1_and_cost_nothing(
    tmp_path: Path, fake: FakeCoreToday, args: list[str], words: str
) -> None:
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), *args], environment(tmp_path, fake), tmp_path
    )
    assert result.code == 1, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert fake.received == []


async def test_console_not_an_image_costs_nothing(tmp_path: Path, fake: FakeCoreToday) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("these are my notes, not a picture")
    result = await run(
        ["console", "--image", str(notes), "make it pop"], environment(tmp_path, fake), tmp_path
    )
    assert result.code == 1
    assert "JPEG, PNG, GIF or WebP" in result.stderr
    assert fake.creates == []
    assert await balance(tmp_path, fake) == 1200


async def test_console_missing_file_and_missing_key(tmp_path: Path, fake: FakeCoreToday) -> None:
    missing = await run(
        ["console", "--image", "nope.png", "x"], environment(tmp_path, fake), tmp_path
    )
    assert missing.code == 1 and "not a file" in missing.stderr
    env = environment(tmp_path, fake, KONTEXT_PROVIDER__API_KEY="")
    no_key = await run(["console", "--image", str(cat_png(tmp_path / "c.png")), "x"], env, tmp_path)
    assert no_key.code == 2
    assert "KONTEXT_PROVIDER__API_KEY" in no_key.stderr
    assert "Traceback" not in no_key.stderr
    assert fake.creates == []
    # Before there is a key, help and credits still answer: only an edit needs it.
    helped = await run(["console", "help"], env, tmp_path)
    assert helped.code == 0, helped.stderr
    assert "--ar RATIO" in helped.stdout and "KONTEXT_PROVIDER__API_KEY" not in helped.stderr
    credits = await run(["console", "credits"], env, tmp_path)
    assert credits.code == 0 and "1200" in credits.stdout, credits.stderr


async def test_console_provider_failure_exits_3_and_refunds(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    fake.script.outcome = "failed"
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), "make it a watercolor"],
        environment(tmp_path, fake),
        tmp_path,
    )
    assert result.code == 3
    assert "could not finish this edit" in result.stderr
    assert "refunded" in result.stderr
    assert await balance(tmp_path, fake) == 1200


async def test_console_moderation_exits_1_and_refunds(tmp_path: Path, fake: FakeCoreToday) -> None:
    fake.script.outcome = "moderated"
    image = cat_png(tmp_path / "cat.png")
    result = await run(
        ["console", "--image", str(image), "x"], environment(tmp_path, fake), tmp_path
    )
    assert result.code == 1
    assert "safety filter" in result.stderr
    assert await balance(tmp_path, fake) == 1200


async def test_killed_mid_job_then_restarted_charges_once(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake, KONTEXT_JOBS__LEASE_SECONDS="0.5")
    first_out = tmp_path / "first.png"
    await kill_mid_job(tmp_path, fake, env, first_out)
    second_out = tmp_path / "second.png"
    result = await run(
        ["console", "--image", str(tmp_path / "cat.png"), "--out", str(second_out), "now wave"],
        env,
        tmp_path,
    )
    assert result.code == 0, result.stderr
    assert first_out.is_file() and second_out.is_file()
    assert len(fake.creates) == 2  # one per job: the first was polled again, not resubmitted
    assert await balance(tmp_path, fake) == 1200 - 240
    assert await ledger_kinds(env) == ["charge", "charge", "grant", "reserve", "reserve"]


async def test_run_finishes_orphaned_jobs_and_stops_on_sigterm(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake, KONTEXT_JOBS__LEASE_SECONDS="0.5")
    out = tmp_path / "orphan.png"
    await kill_mid_job(tmp_path, fake, env, out)
    bot = await start(["run"], env, tmp_path)
    try:
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            while not out.is_file():
                await asyncio.sleep(0.02)
    finally:
        bot.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(bot.communicate(), timeout=HANG_GUARD_SECONDS)
    assert bot.returncode == 0, err.decode()
    assert "no platform adapter is enabled" in err.decode()
    assert len(fake.creates) == 1
    assert await ledger_kinds(env) == ["charge", "grant", "reserve"]


MODELS_TOML = TWO_MODELS_TOML


async def test_console_model_max_charges_max_and_sends_the_max_id(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(MODELS_TOML)
    image = cat_png(tmp_path / "cat.png")
    env = environment(tmp_path, fake)
    result = await run(
        [
            "console",
            "--config",
            str(config),
            "--image",
            str(image),
            "make it ink",
            "--model",
            "max",
        ],
        env,
        tmp_path,
    )
    assert result.code == 0, result.stderr
    (create,) = fake.creates
    assert create.model == "black-forest-labs/flux-kontext-max"
    assert "Queued (position 1, model max): 240 credits reserved" in result.stderr
    assert "balance: 960 credits (8 pro images)" in result.stderr

    unknown = await run(
        ["console", "--config", str(config), "--image", str(image), "x", "--model", "turbo"],
        env,
        tmp_path,
    )
    assert unknown.code != 0
    assert "pro (120 credits, default), max (240 credits)" in unknown.stderr
    assert len(fake.creates) == 1

    helped = await run(["console", "--config", str(config), "help"], env, tmp_path)
    assert "--model NAME" in helped.stdout
    assert "Models: pro (120 credits, default), max (240 credits)." in helped.stdout


# -- kontext-bot console history (issue 19) ------------------------------------------------------


async def test_console_history_shows_own_jobs_free_and_others_only_to_admins(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    env = environment(tmp_path, fake)
    empty = await run(["console", "history"], env, tmp_path)
    assert (empty.code, empty.stdout.strip()) == (0, "You have no edits yet."), empty.stderr

    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "result.png"
    edited = await run(
        ["console", "--image", str(image), "--out", str(out), "make it a watercolor"], env, tmp_path
    )
    assert edited.code == 0, edited.stderr
    before = await balance(tmp_path, fake)
    shown = await run(["console", "history"], env, tmp_path)
    assert shown.code == 0, shown.stderr
    header, line = shown.stdout.strip().splitlines()
    assert header == "Your last 1 edit:"
    seed = fake.creates[0].input["seed"] if fake.creates[0].input else None
    for part in ("make it a watercolor", f"seed {seed}", "delivered", "120 credits", str(out)):
        assert part in line, (part, line)
    assert "UTC" in line and "black-forest-labs/flux-kontext-pro" in line
    assert await balance(tmp_path, fake) == before, "history is free"

    refused = await run(["console", "history", "slack:T1:U1"], env, tmp_path)
    assert refused.code == 1
    assert "only see your own history" in refused.stderr and refused.stdout == ""
    bad = await run(["console", "history", "slack:T1:U1!"], env, tmp_path)
    assert bad.code == 1 and "not a valid user id" in bad.stderr

    me = str(console_user())
    admin = environment(tmp_path, fake, KONTEXT_CREDITS__ADMINS=f'["{me}"]')
    other = await run(["console", "history", "slack:T1:U1"], admin, tmp_path)
    assert (other.code, other.stdout.strip()) == (0, "U1 has no edits yet."), other.stderr
    mine = await run(["console", "history", me], admin, tmp_path)
    assert "make it a watercolor" in mine.stdout
    assert len(fake.creates) == 1, "nothing was submitted by asking"
