"""``kontext-bot console --preset NAME`` (issue 27) as a subprocess against the fake
core.today: the preset's instruction, with the words given added, is the prompt the
provider gets, with the preset's options; an operator's own preset and its model; an
unknown preset or one without an image refused, free."""

from __future__ import annotations

from pathlib import Path

from bot.config.presets import SHIPPED_PRESETS
from tests.fakes.coretoday import FakeCoreToday
from tests.support import TWO_MODELS_TOML, balance, cat_png, environment, run


def template(name: str) -> str:
    return next(str(p["prompt"]) for p in SHIPPED_PRESETS if p["name"] == name)


async def test_console_preset_sends_the_instruction_with_the_words_added(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    image = cat_png(tmp_path / "cat.png")
    out = tmp_path / "square.png"
    result = await run(
        ["console", "--image", str(image), "--out", str(out), "--preset", "make-square", "at dusk"],
        environment(tmp_path, fake),
        tmp_path,
    )
    assert result.code == 0, result.stderr
    assert out.is_file()
    (create,) = fake.creates
    assert create.input is not None
    expected = " ".join(template("make-square").replace("{prompt}", "at dusk").split())
    assert create.input["prompt"] == expected and expected.endswith("at dusk")
    assert create.input["aspect_ratio"] == "1:1", "the preset's own ratio"
    assert create.file_bytes == image.read_bytes()
    assert await balance(tmp_path, fake) == 1200 - 120


async def test_console_operator_preset_with_its_model_and_the_users_ratio_wins(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        TWO_MODELS_TOML
        + """
[[presets]]
name = "ink"
prompt = "Redraw as a black ink drawing {prompt}; keep the subject exactly as it is"
aspect_ratio = "4:3"
model = "max"
button = "Ink!"
"""
    )
    image = cat_png(tmp_path / "cat.png")
    env = environment(tmp_path, fake)
    result = await run(
        ["console", "--config", str(config), "--image", str(image), "--preset=ink", "--ar", "16:9"],
        env,
        tmp_path,
    )
    assert result.code == 0, result.stderr
    (create,) = fake.creates
    assert create.input is not None
    assert create.input["prompt"] == (
        "Redraw as a black ink drawing ; keep the subject exactly as it is"
    )
    assert create.input["aspect_ratio"] == "16:9", "the user's --ar over the preset's"
    assert (create.model or "").endswith("flux-kontext-max"), "the preset's model"
    assert await balance(tmp_path, fake, env) == 1200 - 240


async def test_console_unknown_preset_or_no_image_exits_1_and_costs_nothing(
    tmp_path: Path, fake: FakeCoreToday
) -> None:
    image = cat_png(tmp_path / "cat.png")
    env = environment(tmp_path, fake)
    unknown = await run(["console", "--image", str(image), "--preset", "sparkle"], env, tmp_path)
    assert unknown.code == 1, unknown.stderr
    assert "There is no preset named 'sparkle'" in unknown.stderr
    assert "zoom-out" in unknown.stderr, "the refusal names the presets there are"
    bare = await run(["console", "--preset", "zoom-out"], env, tmp_path)
    assert bare.code == 1, bare.stderr
    assert "A preset changes an image" in bare.stderr
    assert fake.received == []
    assert await balance(tmp_path, fake) == 1200
