"""Several images in one edit and each model's own inputs (issue 26): the profiles, the
options checked against the chosen model before anything is reserved, the cost of
extra images, creates built per provider through the real provider classes against the
fakes, failover that keeps to providers whose profile takes the job, and the console
with ``--image`` repeated through the real CLI."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bot.app import build_core
from bot.chat.commands import EditCommand, parse_command
from bot.chat.conversation import Conversation
from bot.chat.texts import Style
from bot.credits.model_profiles import (
    ImageTransport,
    ProfileOverrides,
    profile_for,
    shipped_profile,
)
from bot.credits.models import Catalogue, Model
from bot.domain import EditOptions, EditRequest, JobState, UserRef
from bot.errors import UserInputError
from bot.providers.base import InputImage, ProviderCapabilities, ProviderRequest
from bot.providers.bfl import BflProvider, flux2_size
from bot.providers.coretoday import CoreTodayProvider
from bot.providers.replicate import ReplicateProvider
from tests.fakes import bfl as bfl_fake
from tests.fakes import coretoday as coretoday_fake
from tests.fakes import replicate as replicate_fake
from tests.recording import RecordingFrontend
from tests.support import (
    HANG_GUARD_SECONDS,
    cat_png,
    core_with_fallbacks,
    environment,
    make_settings,
    png,
    run,
)

ALICE = UserRef("slack", "T1", "U1")
PRO_ID = "black-forest-labs/flux-kontext-pro"
FLUX2_ID = "black-forest-labs/flux-2-pro"
FLEX_ID = "black-forest-labs/flux-2-flex"

THREE_MODELS: list[dict[str, object]] = [
    {"name": "pro", "model": PRO_ID, "cost_per_image": 120, "default": True},
    {"name": "flux2", "model": FLUX2_ID, "cost_per_image": 100, "cost_per_extra_image": 10},
    {"name": "flex", "model": FLEX_ID, "cost_per_image": 200},
]
THREE_MODELS_TOML = f"""
[[models]]
name = "pro"
model = "{PRO_ID}"
cost_per_image = 120
default = true

[[models]]
name = "flux2"
model = "{FLUX2_ID}"
cost_per_image = 100

[[models]]
name = "flex"
model = "{FLEX_ID}"
cost_per_image = 200
"""


def catalogue(provider: str = "coretoday") -> Catalogue:
    def model(name: str, ident: str, cost: int, **more: Any) -> Model:
        return Model(name=name, cost=cost, ids={provider: ident}, **more)

    return Catalogue(
        [
            model("pro", PRO_ID, 120, default=True),
            model("flux2", FLUX2_ID, 100, extra_cost=10),
            model("flex", FLEX_ID, 200),
        ]
    )


# -- profiles ---------------------------------------------------------------------------------


def test_shipped_profiles_per_provider() -> None:
    kontext = shipped_profile("coretoday", PRO_ID)
    assert (kontext.max_images, kontext.transport) == (1, ImageTransport.SINGLE)
    assert shipped_profile("bfl", "flux-kontext-pro").max_images == 4
    assert shipped_profile("bfl", "flux-kontext-max").transport == ImageTransport.NUMBERED
    flux2 = shipped_profile("coretoday", FLUX2_ID)
    assert flux2.transport == ImageTransport.MULTIPART and flux2.max_images == 8
    assert (flux2.safety_min, flux2.safety_max, flux2.safety_limit(True)) == (1, 5, 5)
    assert "webp" in flux2.output_formats and flux2.resolutions == (1, 2, 4)
    assert shipped_profile("coretoday", FLEX_ID).max_images == 10
    assert shipped_profile("replicate", FLUX2_ID).transport == ImageTransport.ARRAY
    assert "webp" not in shipped_profile("bfl", "flux-2-pro").output_formats
    assert shipped_profile("comfyui", "anything").max_images == 1


def test_an_unknown_model_is_conservative_until_the_operator_says_more() -> None:
    unknown = shipped_profile("coretoday", "someone/new-model")
    assert unknown.family == "unknown" and unknown.max_images == 1
    widened = profile_for("coretoday", "someone/new-model", ProfileOverrides(max_images=3))
    assert widened.max_images == 3 and widened.transport == ImageTransport.MULTIPART
    assert profile_for("bfl", "x", ProfileOverrides(max_images=3)).transport == (
        ImageTransport.NUMBERED
    )
    # The shipped ComfyUI workflow loads one image, whatever the key says.
    assert profile_for("comfyui", "x", ProfileOverrides(max_images=3)).max_images == 1


def test_the_models_keys_reach_the_catalogue(tmp_path: Path) -> None:
    from bot.credits.models import catalogue_for

    models = [
        {**THREE_MODELS[0]},
        {"name": "new", "model": "someone/new", "cost_per_image": 50, "max_images": 3},
    ]
    settings = make_settings(tmp_path, models=models)
    found = catalogue_for(settings)
    new = found.get("new")
    assert new is not None and new.max_images == 3 and new.kind == "edit"
    assert found.max_images == 3


def test_cost_of_extra_images_is_one_amount() -> None:
    flux2 = catalogue().get("flux2")
    assert flux2 is not None
    assert [flux2.cost_for(n) for n in (0, 1, 2, 8)] == [100, 100, 110, 170]


# -- options against the chosen model ---------------------------------------------------------


def parse(text: str, has_image: bool = True) -> Any:
    return parse_command(
        text, has_image=has_image, capabilities=ProviderCapabilities(), models=catalogue()
    )


def refusal(text: str, has_image: bool = True) -> str:
    with pytest.raises(UserInputError) as caught:
        parse(text, has_image)
    return caught.value.user_message


def test_flux2_takes_its_own_options() -> None:
    command = parse("x --model flux2 --safety 5 --format webp --res 2 --ar 9:16")
    assert isinstance(command, EditCommand)
    assert command.options == EditOptions(
        aspect_ratio="9:16",
        output_format="webp",
        safety=5,
        model="flux2",
        resolution=2,
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x --model flux2 --safety 6", ["1 (strictest) to 5", "flux2"]),
        ("x --model flux2 --safety 0", ["1 (strictest) to 5"]),
        ("x --model flux2 --ar 21:9", ["with flux2", "match_input_image, 1:1, 16:9"]),
        ("x --model flux2 --res 3", ["--res 3", "1, 2, 4"]),
        ("x --model flux2 --res big", ["whole number", "big"]),
        ("x --format webp", ["with pro", "png or jpg"]),
        ("x --res 2", ["--res is not something pro takes"]),
        ("x --safety 5", ["at most 2", "image"]),
    ],
)
def test_options_the_model_does_not_take_are_refused_naming_what_it_does(
    text: str, words: list[str]
) -> None:
    message = refusal(text)
    for word in words:
        assert word in message, message


def test_flux2_allows_higher_safety_with_an_image_and_a_long_prompt() -> None:
    assert parse("x --model flux2 --safety 4").options.safety == 4
    long = "y" * 3000
    assert parse(f"{long} --model flux2").prompt == long
    assert "limit is 2000" in refusal(long)


def test_help_lists_each_models_inputs_and_says_what_several_images_mean() -> None:
    from bot.chat import texts

    text = texts.help_text(texts.Style(), 120, catalogue())
    assert "the first is the one edited" in text
    assert "flux2: up to 8 images (+10 credits each beyond the first)" in text
    assert "--safety 1-5" in text and "--res 1|2|4" in text
    assert "pro: 1 image" in text and "--safety 0-6 (at most 2 with an image)" in text


# -- the core: too many images, costs, failover -----------------------------------------------


async def started(tmp_path: Path, fake: Any, frontend: RecordingFrontend, **more: Any) -> Any:
    settings = make_settings(
        tmp_path,
        fake.base_url,
        models=THREE_MODELS,
        jobs={"poll_initial_seconds": 0.02, "poll_max_seconds": 0.05},
        **more,
    )
    core = await build_core(settings, {"slack": frontend})
    await core.start()
    return core


def request(frontend: RecordingFrontend, key: str, count: int, model: str) -> EditRequest:
    attachments = tuple(
        frontend.attach(f"{key}-{n}.png", png((40 * n % 255, 80, 120))) for n in range(count)
    )
    return EditRequest(
        ALICE, "put the hat from image 2 on the cat", EditOptions(model=model), attachments, {}, key
    )


async def test_nine_images_to_an_eight_image_model_are_refused_free(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as fake:
        core = await started(tmp_path, fake, frontend)
        try:
            with pytest.raises(UserInputError) as caught:
                await core.service.submit(request(frontend, "nine", 9, "flux2"))
            with pytest.raises(UserInputError) as kontext:
                await core.service.submit(request(frontend, "two", 2, "pro"))
            balance = (await core.service.credits(ALICE)).balance
        finally:
            await core.close()
    message = caught.value.user_message
    assert "flux2 takes at most 8 images; you gave 9" in message
    assert "flex takes up to 10: add --model flex" in message and "Nothing was charged" in message
    assert "pro takes at most 1 image; you gave 2" in kontext.value.user_message
    assert "flux2 takes up to 8" in kontext.value.user_message
    assert fake.creates == [] and balance == 1200


async def test_three_images_make_one_create_in_order_and_cost_the_extra(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    dashboard = {"enabled": True, "port": 0, "password": "pw-0123456789"}
    async with coretoday_fake.FakeCoreToday() as fake:
        core = await started(tmp_path, fake, frontend, dashboard=dashboard)
        try:
            sent = request(frontend, "three", 3, "flux2")
            ack = await core.service.submit(sent)
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                job = await core.runner.wait_for(ack.job.id)
            balance = (await core.service.credits(ALICE)).balance
            history = (await Conversation(core.service, Style()).history(ALICE)).text
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{core.dashboard.port}", auth=("admin", "pw-0123456789")
            ) as http:
                page = (await http.get("/jobs")).text
        finally:
            await core.close()
    assert "flux2 · 3 images · seed" in history
    assert '<td class="num inputs">3</td>' in page
    assert job.state == JobState.SUCCEEDED, job.error_message
    assert ack.job.cost == 100 + 10 * 2 and balance == 1200 - 120
    assert len(job.attachments) == 3
    (create,) = fake.creates
    assert create.model == FLUX2_ID
    assert [f[0] for f in create.files] == ["file:input_images"] * 3
    assert [f[3] for f in create.files] == [frontend.files[f"three-{n}.png"] for n in range(3)]


async def test_failover_keeps_to_providers_whose_profile_takes_the_job(tmp_path: Path) -> None:
    """Kontext [pro] takes one image on core.today and four at BFL: a 3-image job goes to
    BFL straight away (numbered inputs), and never to core.today."""
    frontend = RecordingFrontend()
    models = [{"name": "pro", "model": PRO_ID, "cost_per_image": 120, "default": True}]
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        bfl = {"name": "bfl", "base_url": fallback.base_url, "api_key": bfl_fake.DEFAULT_KEY}
        core = await core_with_fallbacks(
            tmp_path, primary.base_url, coretoday_fake.DEFAULT_KEY, [bfl], frontend, models
        )
        try:
            ack = await core.service.submit(request(frontend, "kx", 3, "pro"))
            async with asyncio.timeout(HANG_GUARD_SECONDS):
                job = await core.runner.wait_for(ack.job.id)
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED and job.provider == "bfl"
    assert primary.creates == []
    (create,) = fallback.creates
    assert [f[0] for f in create.files] == ["input_image", "input_image_2", "input_image_3"]
    assert [f[3] for f in create.files] == [frontend.files[f"kx-{n}.png"] for n in range(3)]


# -- providers build their creates from the profile (real clients, fake servers) --------------


def images(count: int) -> tuple[InputImage, ...]:
    return tuple(InputImage(png((10 * n, 20, 30)), "image/png", f"in{n}.png") for n in range(count))


def provider_args(base_url: str, key: str) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": key,
        "model": PRO_ID,
        "capabilities": ProviderCapabilities(),
        "request_timeout": 10.0,
        "max_retries": 0,
    }


async def test_coretoday_sends_kontext_one_file_and_flux2_the_field_repeated() -> None:
    async with coretoday_fake.FakeCoreToday() as fake:
        provider = CoreTodayProvider(**provider_args(fake.base_url, coretoday_fake.DEFAULT_KEY))
        try:
            options = EditOptions(resolution=2, output_format="webp", safety=5)
            await provider.submit(
                ProviderRequest("a", options, images(2), model=FLUX2_ID), idempotency_key="k1"
            )
            await provider.submit(
                ProviderRequest("b", EditOptions(), images(1), model=PRO_ID), idempotency_key="k2"
            )
        finally:
            await provider.aclose()
    flux2, kontext = fake.creates
    assert [f[0] for f in flux2.files] == ["file:input_images"] * 2
    assert flux2.input is not None and flux2.input["resolution"] == "2 MP"
    assert [f[0] for f in kontext.files] == ["file:input_image"]
    assert fake.refusals == []


async def test_bfl_numbers_the_images_and_sizes_flux2() -> None:
    async with bfl_fake.FakeBfl() as fake:
        provider = BflProvider(**provider_args(fake.base_url, bfl_fake.DEFAULT_KEY))
        try:
            options = EditOptions(aspect_ratio="16:9", resolution=2)
            await provider.submit(
                ProviderRequest("a", options, images(3), model="flux-2-pro"), idempotency_key="k"
            )
        finally:
            await provider.aclose()
    (create,) = fake.creates
    assert [f[0] for f in create.files] == ["input_image", "input_image_2", "input_image_3"]
    assert create.input is not None and "aspect_ratio" not in create.input
    assert (create.input["width"], create.input["height"]) == flux2_size("16:9", 2)
    width, height = flux2_size("16:9", 2)
    assert width % 32 == 0 and height % 32 == 0 and 1.8e6 < width * height <= 2e6
    assert max(flux2_size("21:9", 4)) <= 2048


async def test_replicate_sends_flux2_input_images_in_order() -> None:
    async with replicate_fake.FakeReplicate() as fake:
        provider = ReplicateProvider(**provider_args(fake.base_url, replicate_fake.DEFAULT_KEY))
        try:
            sent = images(2)
            await provider.submit(
                ProviderRequest("a", EditOptions(), sent, model=FLUX2_ID), idempotency_key="k"
            )
        finally:
            await provider.aclose()
    (create,) = fake.creates
    assert [f[3] for f in create.files] == [i.data for i in sent]
    assert fake.refusals == []


# -- the fakes refuse what the docs refuse ----------------------------------------------------


def _png_part(name: str) -> tuple[str, tuple[str, bytes, str]]:
    return (name, ("a.png", png(), "image/png"))


async def _upload(
    fake: coretoday_fake.FakeCoreToday, model: str, files: list[Any], **inputs: Any
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{fake.base_url}/v1/predictions/upload",
            headers={"Authorization": f"Bearer {coretoday_fake.DEFAULT_KEY}"},
            data={"model": model, "input": json.dumps({"prompt": "p", **inputs})},
            files=files,
        )


async def test_the_fake_coretoday_refuses_what_its_model_pages_refuse() -> None:
    async with coretoday_fake.FakeCoreToday() as fake:
        single = await _upload(fake, FLUX2_ID, [_png_part("file:input_image")])
        nine = await _upload(fake, FLUX2_ID, [_png_part("file:input_images")] * 9)
        unsafe = await _upload(fake, FLUX2_ID, [_png_part("file:input_images")], safety_tolerance=6)
        kontext_two = await _upload(fake, PRO_ID, [_png_part("file:input_image")] * 2)
        eight = await _upload(fake, FLUX2_ID, [_png_part("file:input_images")] * 8)
        ten_flex = await _upload(fake, FLEX_ID, [_png_part("file:input_images")] * 10)
    assert [r.status_code for r in (single, nine, unsafe, kontext_two)] == [422] * 4
    assert "use input_images" in single.json()["detail"]
    assert "at most 8" in nine.json()["detail"]
    assert "between 1 and 5" in unsafe.json()["detail"]
    assert "one input_image" in kontext_two.json()["detail"]
    assert eight.status_code == 201 and ten_flex.status_code == 201
    assert len(fake.predictions) == 2


async def test_the_fake_bfl_refuses_a_ninth_image_a_ratio_on_flux2_and_safety_6() -> None:
    encoded = base64.b64encode(png()).decode()
    numbered = {f"input_image_{n}": encoded for n in range(2, 10)}
    async with bfl_fake.FakeBfl() as fake, httpx.AsyncClient() as client:
        headers = {"x-key": bfl_fake.DEFAULT_KEY}

        async def post(endpoint: str, **body: Any) -> httpx.Response:
            return await client.post(
                f"{fake.base_url}/v1/{endpoint}", headers=headers, json={"prompt": "p", **body}
            )

        nine = await post("flux-2-pro", input_image=encoded, **numbered)
        ratio = await post("flux-2-pro", aspect_ratio="16:9")
        unsafe = await post("flux-2-pro", safety_tolerance=6)
        kontext_five = await post("flux-kontext-pro", input_image_5=encoded)
        fine = await post("flux-kontext-pro", input_image=encoded, input_image_4=encoded)
    assert [r.status_code for r in (nine, ratio, unsafe, kontext_five)] == [422] * 4
    assert fake.refusals == [
        "input_image_9 is not a parameter of this endpoint",
        "aspect_ratio is not a parameter of this endpoint; give width and height",
        "safety_tolerance must be between 0 and 5",
        "input_image_5 is not a parameter of this endpoint",
    ]
    assert fine.status_code == 200


async def test_the_fake_replicate_refuses_input_image_on_flux2_and_too_many() -> None:
    uri = "data:image/png;base64," + base64.b64encode(png()).decode()
    async with replicate_fake.FakeReplicate() as fake, httpx.AsyncClient() as client:
        headers = {"Authorization": f"Bearer {replicate_fake.DEFAULT_KEY}"}

        async def create(model: str, **inputs: Any) -> httpx.Response:
            return await client.post(
                f"{fake.base_url}/v1/models/{model}/predictions",
                headers=headers,
                json={"input": {"prompt": "p", **inputs}},
            )

        single = await create(FLUX2_ID, input_image=uri)
        nine = await create(FLUX2_ID, input_images=[uri] * 9)
        kontext_list = await create(PRO_ID, input_images=[uri])
        fine = await create(FLUX2_ID, input_images=[uri] * 8)
    assert [r.status_code for r in (single, nine, kontext_list)] == [422] * 3
    assert "use input_images" in single.json()["detail"]
    assert "at most 8" in nine.json()["detail"]
    assert fine.status_code == 201


# -- the console, through the real CLI ----------------------------------------------------------


async def test_console_two_images_with_flux2_writes_the_result_and_charges_100(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(THREE_MODELS_TOML)
    cat = cat_png(tmp_path / "a.png")
    hat = tmp_path / "b.png"
    hat.write_bytes(png((10, 10, 200), (40, 40)))
    out = tmp_path / "out.png"
    async with coretoday_fake.FakeCoreToday() as fake:
        env = environment(tmp_path, fake)
        result = await run(
            [
                "console",
                "--config",
                str(config),
                "--image",
                str(cat),
                "--image",
                str(hat),
                "--out",
                str(out),
                "--model",
                "flux2",
                "put the hat from image 2 on the cat",
            ],
            env,
            tmp_path,
        )
        nine = await run(
            ["console", "--config", str(config)]
            + [arg for _ in range(9) for arg in ("--image", str(cat))]
            + ["--model", "flux2", "nine cats"],
            env,
            tmp_path,
        )
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    with Image.open(out) as written:
        written.load()
    (create,) = fake.creates
    assert create.model == FLUX2_ID
    assert [f[0] for f in create.files] == ["file:input_images"] * 2
    assert [f[3] for f in create.files] == [cat.read_bytes(), hat.read_bytes()]
    assert "model flux2, 2 images): 100 credits reserved" in result.stderr
    assert "balance: 1100 credits" in result.stderr
    assert nine.code == 1
    assert "flux2 takes at most 8 images; you gave 9" in nine.stderr
    assert "--model flex" in nine.stderr
