"""Upscale (issue 27): ``--upscale N`` through the config, the grammar, the service and
Replicate's ``nightmareai/real-esrgan`` (its fake refuses what the real schema does), and
the fitting of a large result into an upload limit."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pydantic import ValidationError

from bot.app import build_core
from bot.chat import texts
from bot.chat.commands import EditCommand, build_options, parse_command
from bot.chat.conversation import Conversation, Edit, NextEdit, Said
from bot.chat.texts import Style
from bot.config import Settings
from bot.credits.models import Catalogue, catalogue_for
from bot.domain import EditRequest, JobState, UserRef
from bot.errors import UserInputError
from bot.images import fit_upload
from bot.providers.base import ProviderCapabilities
from tests.fakes.replicate import DEFAULT_KEY, FakeReplicate
from tests.recording import RecordingFrontend
from tests.support import (
    HANG_GUARD_SECONDS,
    balance,
    cat_png,
    edit_and_wait,
    environment,
    make_settings,
    run,
)

UPSCALE_MODELS = """
[provider]
name = "replicate"
model = "black-forest-labs/flux-kontext-pro"

[[models]]
name = "pro"
model = "black-forest-labs/flux-kontext-pro"
cost_per_image = 120
default = true

[[models]]
name = "upscale"
kind = "upscale"
model = "nightmareai/real-esrgan"
providers = ["replicate"]
cost_per_image = 10
"""


def settings_of(models: list[dict[str, Any]], provider: str = "replicate") -> Settings:
    return Settings.model_validate(
        {
            "provider": {"name": provider, "api_key": "k" * 20},
            "models": models,
        }
    )


PRO = {"name": "pro", "model": "black-forest-labs/flux-kontext-pro", "cost_per_image": 120}
UPSCALER = {
    "name": "upscale",
    "kind": "upscale",
    "model": "nightmareai/real-esrgan",
    "cost_per_image": 10,
}


def catalogue() -> Catalogue:
    return catalogue_for(settings_of([{**PRO, "default": True}, UPSCALER]))


def parse(text: str, *, has_image: bool = True, models: Catalogue | None = None) -> Any:
    return parse_command(
        text,
        has_image=has_image,
        capabilities=ProviderCapabilities(),
        models=models if models is not None else catalogue(),
    )


# -- the config --------------------------------------------------------------------------------


def test_an_upscaler_loads_and_is_never_the_edit_default() -> None:
    models = catalogue()
    upscaler = models.upscaler()
    assert upscaler is not None and upscaler.name == "upscale"
    assert upscaler.scales == (2, 4)
    assert models.default.name == "pro"
    assert [m.name for m in models.editors] == ["pro"]
    # Discord's model choices list edit models only; one edit model: no choice.
    assert models.choices(25) == []


@pytest.mark.parametrize(
    ("provider", "models", "words"),
    [
        ("coretoday", [{**PRO, "default": True}, UPSCALER], "its public docs list no upscaler"),
        ("bfl", [{**PRO, "default": True}, UPSCALER], "its public docs list no upscaler"),
        ("replicate", [PRO, {**UPSCALER, "default": True}], "cannot be the default"),
        (
            "replicate",
            [{**PRO, "default": True}, {**UPSCALER, "model": "someone/sharpener"}],
            "knows no upscaler 'someone/sharpener' at 'replicate'",
        ),
    ],
)
def test_the_config_refuses_an_upscaler_it_cannot_serve(
    provider: str, models: list[dict[str, Any]], words: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_of(models, provider)
    assert words in str(refused.value)


# -- the grammar ---------------------------------------------------------------------------------


def test_upscale_needs_no_prompt_and_uses_the_upscaler() -> None:
    parsed = parse("/kontext --upscale 2")
    assert isinstance(parsed, EditCommand)
    assert parsed.prompt == ""
    assert parsed.options.upscale == 2 and parsed.options.model == "upscale"
    assert parse("--upscale=4x").options.upscale == 4


@pytest.mark.parametrize(
    ("text", "has_image", "words"),
    [
        ("--upscale 3", True, "--upscale 3 is not a scale I can make; use 2 or 4"),
        ("--upscale 11", True, "use 2 or 4"),
        ("--upscale big", True, "use 2 or 4"),
        ("--upscale 2 --ar 16:9", True, "leave out --ar"),
        ("--upscale 2 --seed 4 --upsample", True, "leave out --seed, --upsample"),
        ("--upscale 2", False, "Attach the image to upscale"),
        ("--upscale 2 --model pro", True, "pro edits images and does not upscale"),
        ("sharpen it --model upscale", True, "upscale is an upscaler, not an edit model"),
        # Variations (--n) and upscale landed apart: together, one is refused, free.
        ("--upscale 2 --n 3", True, "an upscale is made once, so leave --n out"),
    ],
)
def test_upscale_mistakes_are_refused_free(text: str, has_image: bool, words: str) -> None:
    with pytest.raises(UserInputError) as refused:
        parse(text, has_image=has_image)
    assert words in refused.value.user_message


def test_without_an_upscaler_upscale_is_refused_clearly() -> None:
    only_edits = catalogue_for(settings_of([{**PRO, "default": True}]))
    with pytest.raises(UserInputError) as refused:
        parse("--upscale 2", models=only_edits)
    assert "No upscaler is set up here" in refused.value.user_message


# -- the fake refuses what real-esrgan's schema refuses -------------------------------------------


@pytest.fixture
async def replicate() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


@pytest.mark.parametrize(
    ("inputs", "words"),
    [
        ({"image": "data:image/png;base64,AA==", "scale": 11}, "less than or equal to 10"),
        ({"image": "data:image/png;base64,AA==", "scale": -1}, "greater than or equal to 0"),
        ({"scale": 2}, "image is required"),
        ({"image": "data:image/png;base64,AA==", "prompt": "x"}, "prompt: Additional property"),
        ({"image": "data:image/png;base64,AA==", "face_enhance": "yes"}, "face_enhance"),
    ],
)
async def test_fake_real_esrgan_refuses_what_its_schema_refuses(
    replicate: FakeReplicate, inputs: dict[str, Any], words: str
) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{replicate.base_url}/v1/models/nightmareai/real-esrgan/predictions",
            headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
            json={"input": inputs},
        )
    assert answer.status_code == 422
    assert words in answer.json()["detail"]
    assert replicate.predictions == {}


# -- the console, end to end against the fake Replicate ----------------------------------------


def replicate_env(tmp_path: Path, fake: FakeReplicate, config: Path) -> dict[str, str]:
    env = environment(tmp_path, fake, KONTEXT_PROVIDER__API_KEY=DEFAULT_KEY)  # type: ignore[arg-type]
    env["KONTEXT_CONFIG"] = str(config)
    return env


async def test_console_upscales_through_real_esrgan_and_charges_its_cost(
    tmp_path: Path, replicate: FakeReplicate
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(UPSCALE_MODELS)
    env = replicate_env(tmp_path, replicate, config)
    image = cat_png(tmp_path / "cat.png")  # 96x64
    out = tmp_path / "big.png"
    result = await run(
        ["console", "--image", str(image), "--out", str(out), "--upscale", "2"], env, tmp_path
    )
    assert result.code == 0, result.stderr
    (create,) = replicate.creates
    assert create.model == "nightmareai/real-esrgan"
    # image went as a data URI (the fake keeps its bytes); nothing of an edit's options.
    assert create.input == {"scale": 2, "face_enhance": False}
    assert create.file_bytes == image.read_bytes()
    with Image.open(out) as written:
        assert written.size == (192, 128)
    assert "10 credits reserved" in result.stderr
    assert await balance(tmp_path, replicate, env) == 1200 - 10  # type: ignore[arg-type]


async def test_console_upscale_refusals_cost_nothing(
    tmp_path: Path, replicate: FakeReplicate
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(UPSCALE_MODELS)
    env = replicate_env(tmp_path, replicate, config)
    image = cat_png(tmp_path / "cat.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    out_of_range = await run(["console", "--image", str(image), "--upscale", "8"], env, tmp_path)
    assert out_of_range.code == 1 and "use 2 or 4" in out_of_range.stderr
    not_image = await run(["console", "--image", str(notes), "--upscale", "2"], env, tmp_path)
    assert not_image.code == 1 and "not an image" in not_image.stderr
    no_image = await run(["console", "--upscale", "2"], env, tmp_path)
    assert no_image.code == 1 and "Attach the image to upscale" in no_image.stderr
    config.write_text(UPSCALE_MODELS.split('[[models]]\nname = "upscale"')[0])
    unset = await run(["console", "--image", str(image), "--upscale", "2"], env, tmp_path)
    assert unset.code == 1 and "No upscaler is set up here" in unset.stderr
    assert replicate.creates == []
    assert await balance(tmp_path, replicate, env) == 1200  # type: ignore[arg-type]


async def test_console_upscale_failure_at_the_provider_is_refunded(
    tmp_path: Path, replicate: FakeReplicate
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(UPSCALE_MODELS)
    env = replicate_env(tmp_path, replicate, config)
    replicate.script.outcome = "failed"
    image = cat_png(tmp_path / "cat.png")
    result = await run(["console", "--image", str(image), "--upscale", "4"], env, tmp_path)
    assert result.code == 3, result.stderr
    assert "refunded" in result.stderr
    assert len(replicate.creates) == 1
    assert await balance(tmp_path, replicate, env) == 1200  # type: ignore[arg-type]


async def test_an_upscale_past_the_output_cap_is_refused_before_the_provider_runs(
    tmp_path: Path, replicate: FakeReplicate
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(UPSCALE_MODELS)
    env = replicate_env(tmp_path, replicate, config)
    # 96x64 = 6,144 pixels in; the output cap is 4 x 6,200; 4x (16 x 6,144) is over it.
    env["KONTEXT_IMAGES__MAX_INPUT_PIXELS"] = "6200"
    image = cat_png(tmp_path / "cat.png")
    result = await run(["console", "--image", str(image), "--upscale", "4"], env, tmp_path)
    assert result.code == 1, result.stderr
    assert "The image is 96×64; 4x larger it would be over" in result.stderr
    assert replicate.creates == []
    assert await balance(tmp_path, replicate, env) == 1200  # type: ignore[arg-type]


# -- fitting a result into an upload limit (bot.images.fitting) -----------------------------------


@pytest.fixture(scope="module")
def big_noisy_png() -> bytes:
    """A 4096x4096 PNG of noise: the size of a 4x upscale, and one that compresses badly."""
    noise = random.Random(27).randbytes(4096 * 4096 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (4096, 4096), noise).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_fitting_leaves_what_fits_alone(big_noisy_png: bytes) -> None:
    fitted = fit_upload(big_noisy_png, max_bytes=len(big_noisy_png))
    assert fitted.data is big_noisy_png
    assert (fitted.change, fitted.fits, fitted.content_type) == ("", True, "image/png")
    assert (fitted.width, fitted.height) == (4096, 4096)


def test_fitting_makes_a_full_size_jpeg_first(big_noisy_png: bytes) -> None:
    # A noise JPEG at quality 92 is about a third of the raw pixels, well under the PNG.
    limit = len(big_noisy_png) * 3 // 4
    fitted = fit_upload(big_noisy_png, max_bytes=limit)
    assert fitted.change == "jpeg" and fitted.fits
    assert len(fitted.data) <= limit
    with Image.open(io.BytesIO(fitted.data)) as img:
        assert img.format == "JPEG" and img.size == (4096, 4096)


def test_fitting_scales_down_when_a_jpeg_is_not_enough(big_noisy_png: bytes) -> None:
    limit = 10 * 1024 * 1024 - 64 * 1024  # Discord's 10 MiB less the reply's margin
    fitted = fit_upload(big_noisy_png, max_bytes=limit)
    assert fitted.change == "smaller" and fitted.fits
    assert len(fitted.data) <= limit
    with Image.open(io.BytesIO(fitted.data)) as img:
        assert img.format == "JPEG"
        assert img.size == (fitted.width, fitted.height)
        assert 64 <= img.width < 4096 and img.width == img.height


def test_fitting_never_raises_when_nothing_can_fit(big_noisy_png: bytes) -> None:
    fitted = fit_upload(big_noisy_png, max_bytes=100)
    assert not fitted.fits and fitted.change == "smaller"
    assert len(fitted.data) < len(big_noisy_png)
    garbage = fit_upload(b"not an image", max_bytes=5)
    assert garbage.data == b"not an image" and not garbage.fits


# -- the entry point of a result's Upscale button (Conversation.upscale) ---------------------------


async def test_upscaling_a_stored_result_makes_an_upscale_job_of_it(
    tmp_path: Path, replicate: FakeReplicate
) -> None:
    settings = make_settings(
        tmp_path,
        replicate.base_url,
        provider={"name": "replicate", "api_key": DEFAULT_KEY},
        models=[{**PRO, "default": True}, {**UPSCALER, "providers": ["replicate"]}],  # type: ignore[arg-type]
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
    )
    frontend = RecordingFrontend()
    core = await build_core(settings, {"slack": frontend})
    await core.start()
    try:
        conversation = Conversation(core.service, Style())
        user = UserRef("slack", "T1", "U1")
        edited = await edit_and_wait(core, frontend, user, "first", model="pro")
        assert edited.state == JobState.SUCCEEDED
        (result,) = frontend.delivered
        # The button's message shows the result: it is the upscale's one input.
        shown = frontend.attach("result.png", result.image).source
        gone = await conversation.upscale(edited.id)
        assert isinstance(gone, Said) and gone.mistake  # no image recorded, none shown
        made = await conversation.upscale(edited.id, shown)
        assert isinstance(made, Edit)
        assert made.inputs == (shown,) and made.prompt == ""
        assert (made.options.upscale, made.options.model) == (2, "upscale")
        ack = await core.service.submit(
            EditRequest(
                user, made.prompt, made.options, (frontend.attachment_for(shown),), {}, "up"
            )
        )
        assert ack.job.cost == 10
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            upscaled = await core.runner.wait_for(ack.job.id)
        assert upscaled.state == JobState.SUCCEEDED
        assert replicate.creates[-1].file_bytes == result.image
        assert (frontend.delivered[-1].width, frontend.delivered[-1].height) == (
            result.width * 2,
            result.height * 2,
        )
        # Edit again on the upscaled result edits with the default model, not the upscaler.
        again = await conversation.edit_again(upscaled.id, shown)
        assert isinstance(again, NextEdit) and again.model is None
        # Re-roll of an upscale is another upscale (no seed: the upscaler takes none).
        rerolled = await conversation.reroll(upscaled.id)
        assert isinstance(rerolled, Edit) and rerolled.options.upscale == 2
        assert upscaled.options.seed is None
    finally:
        await core.close()


async def test_an_upscale_button_without_an_upscaler_is_answered_free(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, models=[{**PRO, "default": True}])  # type: ignore[arg-type]
    core = await build_core(settings, with_runner=False)
    try:
        answer = await Conversation(core.service, Style()).upscale("any-job")
        assert isinstance(answer, Said) and "No upscaler is set up here" in answer.text
    finally:
        await core.close()


def test_the_help_names_upscale_only_with_an_upscaler() -> None:
    style = Style()
    with_upscaler = texts.help_text(style, 120, catalogue())
    assert "--upscale N      make the attached image N times larger" in with_upscaler
    assert "2 or 4" in with_upscaler
    without = texts.help_text(style, 120, catalogue_for(settings_of([{**PRO, "default": True}])))
    assert "--upscale" not in without


def test_an_upscale_from_a_forms_fields_refuses_an_edits_options() -> None:
    """Discord's options arrive as fields (build_options), not typed flags."""
    with pytest.raises(UserInputError) as refused:
        build_options(
            has_image=True,
            capabilities=ProviderCapabilities(),
            aspect_ratio="16:9",
            output_format="jpg",
            models=catalogue(),
            upscale=2,
        )
    assert "leave out --ar, --format" in refused.value.user_message
    options = build_options(
        has_image=True, capabilities=ProviderCapabilities(), models=catalogue(), upscale=4
    )
    assert (options.upscale, options.model) == (4, "upscale")
