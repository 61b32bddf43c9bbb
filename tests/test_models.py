"""Named models (``[[models]]``, bot.credits.models): config validation, the grammar, failover
that keeps the model, and restricted models allowed by stored policies.

The flows through the platforms (Discord, Slack, console) are in their own test
modules; here the core is driven directly against the fake providers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_core
from bot.chat.commands import EditCommand, parse_command
from bot.config import Settings, load_settings
from bot.credits.models import Catalogue, Model
from bot.domain import EditOptions, EditRequest, JobState, RequestContext, UserRef
from bot.errors import ConfigError, UserInputError
from bot.providers.base import ProviderCapabilities
from tests.fakes import bfl as bfl_fake
from tests.fakes import coretoday as coretoday_fake
from tests.recording import RecordingFrontend
from tests.support import (
    HANG_GUARD_SECONDS,
    TWO_MODELS,
    TWO_MODELS_TOML,
    core_with_fallbacks,
    edit_and_wait,
    make_settings,
    png,
)

ALICE = UserRef("slack", "T1", "U1")
MAX_ID = "black-forest-labs/flux-kontext-max"


# -- config ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


TWO = TWO_MODELS_TOML


def test_the_contract_example_loads_and_ids_resolve_per_provider(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            '[provider]\nfallbacks = [{ name = "bfl", api_key = "k" }]\n'
            + TWO
            + 'ids = { bfl = "flux-kontext-max" }\n',
        )
    )
    from bot.credits.models import catalogue_for

    models = catalogue_for(settings)
    assert models.several and models.default.name == "pro"
    assert models.choose("MAX").ids == {"coretoday": MAX_ID, "bfl": "flux-kontext-max"}
    assert models.choose("pro").ids["bfl"] == "black-forest-labs/flux-kontext-pro"


def test_without_models_there_is_one_model_from_the_provider(tmp_path: Path) -> None:
    from bot.credits.models import catalogue_for

    models = catalogue_for(load_settings(write(tmp_path, "[credits]\ncost_per_image = 90\n")))
    assert not models.several
    assert models.default.cost == 90
    assert models.default.ids == {"coretoday": "black-forest-labs/flux-kontext-pro"}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (TWO.replace('"max"', '"pro"'), "the name 'pro' is given twice"),
        (TWO.replace("default = true", ""), "exactly one model needs default = true (now: none)"),
        (TWO + "default = true\n", "exactly one model needs default = true (now: pro, max)"),
        (TWO + 'providers = ["replicate"]\n', "the provider 'replicate' is not configured"),
        (TWO + 'ids = { bfl = "flux-kontext-max" }\n', "the provider 'bfl' is not configured"),
        (TWO.replace("default = true", "default = true\nrestricted = true"), "cannot be"),
        (TWO.replace('"max"', '"two words"'), "models.1.name"),
        (TWO.replace("240", "-1"), "models.1.cost_per_image"),
        (
            TWO + '[[credits.overrides]]\nscope = "workspace:slack:T1"\nmodels = ["turbo"]\n',
            "no model named 'turbo'",
        ),
        (
            '[[credits.overrides]]\nscope = "workspace:slack:T1"\nmodels = ["max"]\n',
            "models needs a [[models]] list",
        ),
    ],
)
def test_invalid_models_stop_start_up_with_a_clear_message(
    tmp_path: Path, extra: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, extra))
    assert words in str(caught.value)


def test_check_config_prints_the_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    monkeypatch.setenv("KONTEXT_PROVIDER__API_KEY", "k-123")
    path = write(tmp_path, TWO)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("[[models]]") == 2 and 'name = "max"' in out


# -- grammar -----------------------------------------------------------------------------

CATALOGUE = Catalogue(
    [
        Model("pro", 120, {"coretoday": "p"}, default=True),
        Model("max", 240, {"coretoday": "m"}),
    ]
)


def parse(text: str, models: Catalogue | None = CATALOGUE) -> Any:
    return parse_command(text, has_image=True, capabilities=ProviderCapabilities(), models=models)


def test_model_flag_in_any_spelling() -> None:
    for text in ("ink it --model max", "ink it --model=MAX", "ink it \u2014model max"):
        parsed = parse(text)
        assert isinstance(parsed, EditCommand) and parsed.options.model == "max", text
    assert parse("ink it").options.model is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ink it --model turbo", "Choose one of: pro (120 credits, default), max (240 credits)"),
        ("ink it --model", "--model needs a value, e.g. --model max"),
        ("ink it --model max --model pro", "--model is given twice"),
    ],
)
def test_model_mistakes_say_what_to_write(text: str, words: str) -> None:
    with pytest.raises(UserInputError) as caught:
        parse(text)
    assert words in caught.value.user_message


def test_the_unknown_option_answer_offers_model_only_with_a_choice() -> None:
    one = Catalogue([Model("pro", 120, {}, default=True)])
    with pytest.raises(UserInputError) as caught:
        parse("x --bogus", one)
    assert "--model" not in caught.value.user_message
    with pytest.raises(UserInputError) as caught:
        parse("x --bogus")
    assert "--model" in caught.value.user_message


# -- the runner: failover keeps the model -------------------------------------------------


async def failover_core(
    tmp_path: Path, primary: Any, fallback: Any, frontend: RecordingFrontend, models: list[Any]
) -> Any:
    bfl = {"name": "bfl", "base_url": fallback.base_url, "api_key": bfl_fake.DEFAULT_KEY}
    return await core_with_fallbacks(
        tmp_path, primary.base_url, coretoday_fake.DEFAULT_KEY, [bfl], frontend, models
    )


MODELS_ON_TWO_PROVIDERS = [
    {**TWO_MODELS[0]},
    {**TWO_MODELS[1], "ids": {"bfl": "flux-kontext-max"}},
    {"name": "solo", "cost_per_image": 60, "providers": ["coretoday"]},
    {"name": "far", "model": MAX_ID, "cost_per_image": 200, "providers": ["bfl"]},
]


async def test_failover_sends_the_models_id_for_the_next_provider(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        primary.script.create_failures = [402]
        core = await failover_core(tmp_path, primary, fallback, frontend, MODELS_ON_TWO_PROVIDERS)
        try:
            job = await edit_and_wait(core, frontend, ALICE, "a", "max")
            balance = (await core.service.credits(ALICE)).balance
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED and job.provider == "bfl"
    assert [r.model for r in primary.creates] == [MAX_ID]
    assert [r.model for r in fallback.creates] == ["flux-kontext-max"]
    assert job.model == "flux-kontext-max" and job.model_name == "max" and job.cost == 240
    assert balance == 1200 - 240


async def test_a_fallback_without_the_model_is_skipped(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        primary.script.create_failures = [402]
        core = await failover_core(tmp_path, primary, fallback, frontend, MODELS_ON_TWO_PROVIDERS)
        try:
            job = await edit_and_wait(core, frontend, ALICE, "b", "solo")
            balance = (await core.service.credits(ALICE)).balance
        finally:
            await core.close()
    assert job.state == JobState.FAILED
    assert fallback.creates == [], "bfl does not serve solo"
    assert balance == 1200, "refunded"


async def test_a_model_of_the_fallback_only_goes_there_directly(tmp_path: Path) -> None:
    frontend = RecordingFrontend()
    async with coretoday_fake.FakeCoreToday() as primary, bfl_fake.FakeBfl() as fallback:
        core = await failover_core(tmp_path, primary, fallback, frontend, MODELS_ON_TWO_PROVIDERS)
        try:
            job = await edit_and_wait(core, frontend, ALICE, "c", "far")
        finally:
            await core.close()
    assert job.state == JobState.SUCCEEDED and job.provider == "bfl"
    assert primary.creates == []
    assert [r.model for r in fallback.creates] == ["flux-kontext-max"]


# -- restricted models: stored policies ---------------------------------------------------


async def test_an_admin_allows_a_restricted_model_in_a_channel_at_run_time(
    tmp_path: Path, fake: coretoday_fake.FakeCoreToday
) -> None:
    ultra = {"name": "ultra", "model": MAX_ID, "cost_per_image": 300, "restricted": True}
    settings: Settings = make_settings(
        tmp_path,
        fake.base_url,
        models=[*TWO_MODELS, ultra],
        credits={"admins": ["slack:T1:U0"]},
    )
    frontend = RecordingFrontend()
    core = await build_core(settings, {"slack": frontend})
    await core.start()
    vip = RequestContext(channel="C0VIP")

    def request(key: str, context: RequestContext) -> EditRequest:
        return EditRequest(
            ALICE,
            "gold",
            EditOptions(model="ultra"),
            (frontend.attach(f"{key}.png", png()),),
            {"c": 1},
            key,
            context,
        )

    try:
        with pytest.raises(UserInputError, match="The model ultra is not available here"):
            await core.service.submit(request("a", vip))
        admin = UserRef("slack", "T1", "U0")
        with pytest.raises(UserInputError, match="I don't know the model 'turbo'"):
            await core.service.admin_set_models(admin, "channel:slack:T1:C0VIP", ["turbo"])
        stored = await core.service.admin_set_models(admin, "channel:slack:T1:C0VIP", ["ULTRA"])
        assert stored.models == ("ultra",)
        ack = await core.service.submit(request("b", vip))
        assert ack.job.cost == 300 and ack.job.model_name == "ultra"
        with pytest.raises(UserInputError, match=r"You can use: pro \(120 credits\), max"):
            await core.service.submit(request("c", RequestContext(channel="C0OTHER")))
        await core.service.admin_set_models(admin, "channel:slack:T1:C0VIP", [])
        with pytest.raises(UserInputError, match="not available here"):
            await core.service.submit(request("d", vip))
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            job = await core.runner.wait_for(ack.job.id)
        assert job.state == JobState.SUCCEEDED
        assert [r.model for r in fake.creates] == [MAX_ID]
        assert (await core.service.credits(ALICE)).balance == 900
    finally:
        await core.close()


def test_the_policy_cli_allows_and_removes_restricted_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    path = write(
        tmp_path,
        f'[storage]\nurl = "sqlite:///{tmp_path / "k.db"}"\n'
        + TWO.replace("cost_per_image = 240", "cost_per_image = 240\nrestricted = true"),
    )
    scope = "role:discord:9876:777"
    assert main(["policy", "models", scope, "max", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{scope}: allowance the config's; active; models max"
    assert main(["policy", "models", scope, "off", "--config", str(path)]) == 0
    assert "models none" in capsys.readouterr().out
    assert main(["policy", "models", scope, "turbo", "--config", str(path)]) != 0
    assert "I don't know the model 'turbo'" in capsys.readouterr().err
