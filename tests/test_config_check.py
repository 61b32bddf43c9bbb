"""check-config tells the truth (issue 29): the same problems ``run`` refuses, all at once
with key, environment twin and fix; the limits in force beside the file's, and
``policy limits --reset``; ``--online`` asks each service about its credential (fakes)."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.config import Settings
from bot.server.online_check import SLACK_BOT_SCOPES, check_online
from tests.fakes import bfl as bfl_fake
from tests.fakes import comfyui as comfyui_fake
from tests.fakes import replicate as replicate_fake
from tests.fakes.coretoday import DEFAULT_KEY, FakeCoreToday
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.support import ROOT, environment, run


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("KONTEXT_"):
            monkeypatch.delenv(name)
    yield


def config(tmp_path: Path, text: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "k.db"}"\n{text}')
    return path


@pytest.mark.parametrize(
    ("text", "env", "key", "words"),
    [
        ("", "", "provider.api_key (KONTEXT_PROVIDER__API_KEY)", 'provider.name = "demo"'),
        (
            '[discord]\nenabled = true\n[provider]\napi_key = "k"\n',
            "KONTEXT_DISCORD__TOKEN",
            "discord.token (KONTEXT_DISCORD__TOKEN)",
            "Reset Token",
        ),
        (
            '[provider]\napi_key = "k"\nwebhook_base_url = "bot.example.com/hooks"\n',
            "",
            "provider.webhook_base_url (KONTEXT_PROVIDER__WEBHOOK_BASE_URL)",
            "https://",
        ),
        (
            f'[provider]\napi_key = "k"\n[slack]\nenabled = true\nbot_token = "{APP_TOKEN}"\n'
            f'app_token = "{APP_TOKEN}"\n',
            "",
            "slack.bot_token (KONTEXT_SLACK__BOT_TOKEN)",
            "OAuth & Permissions",
        ),
    ],
    ids=["no-key", "discord-without-token", "url-without-scheme", "token-in-the-wrong-field"],
)
def test_check_config_and_run_refuse_the_same(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    env: str,
    key: str,
    words: str,
) -> None:
    path = config(tmp_path, text)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and words in err
    # run stops on the very same list before it connects anywhere.
    assert main(["run", "--config", str(path)]) == 2
    assert key in capsys.readouterr().err


def test_every_problem_is_named_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(
        tmp_path,
        '[provider]\nwebhook_base_url = "hooks"\n[discord]\nenabled = true\n'
        f'[slack]\nenabled = true\nbot_token = "{BOT_TOKEN}"\napp_token = "{BOT_TOKEN}"\n',
    )
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "4 problems" in err
    for key in (
        "provider.api_key",
        "provider.webhook_base_url",
        "slack.app_token",
        "discord.token",
    ):
        assert f"  {key} (" in err
    assert BOT_TOKEN not in err  # a token in the wrong field is named, never shown


def test_the_demo_provider_needs_no_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, '[provider]\nname = "demo"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    assert "limits: the file's (no database yet" in capsys.readouterr().out
    assert not (tmp_path / "k.db").exists()  # check-config creates nothing


def test_stored_limits_show_beside_the_files_and_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, '[provider]\nname = "demo"\n[credits]\nbudget = 999\n')
    assert main(["policy", "limits", "--budget", "50000", "--config", str(path)]) == 0
    capsys.readouterr()
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "#   budget: 50000, set by cli:local:" in out and "file says 999" in out
    assert "--reset budget" in out
    assert "#   allowance: 1200 (the file's)" in out
    assert main(["policy", "limits", "--reset", "budget", "--config", str(path)]) == 0
    assert "budget 999" in capsys.readouterr().out.replace(":", "")
    assert main(["check-config", "--config", str(path)]) == 0
    assert "#   budget: 999 (the file's)" in capsys.readouterr().out
    assert main(["policy", "limits", "--reset", "frobs", "--config", str(path)]) == 1
    assert "Name limits to reset" in capsys.readouterr().err


# -- --online against the fakes ----------------------------------------------------------


def settings_for(**sections: dict[str, object]) -> Settings:
    return Settings.model_validate(sections)


async def online(settings: Settings) -> tuple[bool, str]:
    out = io.StringIO()
    ok = await check_online(settings, out)
    return ok, out.getvalue()


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "revoked"])
async def test_online_checks_each_providers_key(valid: bool) -> None:
    cases = [
        ("coretoday", FakeCoreToday, DEFAULT_KEY, "the key is accepted"),
        ("bfl", bfl_fake.FakeBfl, bfl_fake.DEFAULT_KEY, "credits left"),
        ("replicate", replicate_fake.FakeReplicate, replicate_fake.DEFAULT_KEY, "account kontext"),
        ("comfyui", comfyui_fake.FakeComfyUI, comfyui_fake.DEFAULT_KEY, "ComfyUI 0.3.40"),
    ]
    for name, fake_class, key, words in cases:
        async with fake_class() as fake:
            settings = settings_for(
                provider={
                    "name": name,
                    "base_url": fake.base_url,
                    "api_key": key if valid else "revoked-key",
                }
            )
            ok, out = await online(settings)
        assert ok is valid, (name, out)
        assert (words in out) if valid else ("refused (HTTP 401)" in out), (name, out)
        # Nothing was created at the provider: the check costs no image.
        assert not [r for r in fake.received if r.method == "POST"], name


async def test_online_names_an_unreachable_provider() -> None:
    settings = settings_for(
        provider={"name": "bfl", "base_url": "http://127.0.0.1:9", "api_key": "k"}
    )
    ok, out = await online(settings)
    assert not ok and "127.0.0.1:9 refused the connection" in out


@pytest.mark.parametrize(
    ("bot_token", "scopes", "words"),
    [
        (BOT_TOKEN, None, "slack.bot_token: ok, bot @kontext"),
        ("xoxb-revoked", None, "Slack says invalid_auth"),
        (BOT_TOKEN, {"commands", "chat:write"}, "lacks scopes"),
    ],
    ids=["valid", "revoked", "wrong-scopes"],
)
async def test_online_checks_slack(bot_token: str, scopes: set[str] | None, words: str) -> None:
    async with FakeSlack(scopes=scopes) as slack:
        settings = settings_for(
            provider={"name": "demo"},
            slack={
                "enabled": True,
                "bot_token": bot_token,
                "app_token": APP_TOKEN,
                "api_base_url": slack.api_url,
            },
        )
        ok, out = await online(settings)
    assert ok is (words.endswith("@kontext")), out
    assert words in out and "slack.app_token: ok" in out
    assert bot_token not in out


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "revoked"])
async def test_online_checks_discord(valid: bool) -> None:
    async with FakeDiscord() as discord:
        settings = settings_for(
            provider={"name": "demo"},
            discord={
                "enabled": True,
                "token": discord.token if valid else "revoked.token.value",
                "api_base_url": discord.api_url,
            },
        )
        ok, out = await online(settings)
    assert ok is valid, out
    assert (
        ("discord.token: ok, bot" in out and "application id" in out)
        if valid
        else ("discord.token: FAILED" in out)
    )


async def test_check_config_online_through_the_cli(tmp_path: Path, fake: FakeCoreToday) -> None:
    result = await run(["check-config", "--online"], environment(tmp_path, fake), tmp_path)
    assert result.code == 0, result.stderr
    assert "provider.api_key (coretoday): ok" in result.stdout
    revoked = environment(tmp_path, fake, KONTEXT_PROVIDER__API_KEY="revoked")
    result = await run(["check-config", "--online"], revoked, tmp_path)
    assert result.code == 6 and "refused (HTTP 401)" in result.stdout


def test_the_scopes_checked_online_are_the_manifests() -> None:
    for name in ("slack-manifest.yml",):
        manifest = yaml.safe_load((ROOT / "docs" / name).read_text())
        assert set(manifest["oauth_config"]["scopes"]["bot"]) == SLACK_BOT_SCOPES, name


def test_problems_across_sections_are_named_at_once_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checks made while the config is read (a platform's secrets, the dashboard's
    password) no longer stop at the first."""
    path = config(tmp_path, "[slack]\nenabled = true\n[dashboard]\nenabled = true\n")
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("slack.bot_token", "slack.app_token", "dashboard.password"):
        assert f"{key} is required" in err


def test_an_unreachable_database_is_one_of_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "config.toml"
    path.write_text(
        f'[storage]\nurl = "postgresql://bot:pw@127.0.0.1:{port}/kontext"\n'
        '[provider]\nname = "demo"\n'
    )
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "storage.url (KONTEXT_STORAGE__URL): nothing accepts connections" in err
    assert "pw@" not in err


async def test_a_url_with_a_broken_port_is_a_problem_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base URL pasted twice (``http://127.0.0.1:http://...``) has no valid port."""
    broken = "http://127.0.0.1:http://127.0.0.1:8188"
    path = config(tmp_path, f'[provider]\nname = "comfyui"\nbase_url = "{broken}"\n')
    assert await asyncio.to_thread(main, ["check-config", "--online", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "provider.base_url (KONTEXT_PROVIDER__BASE_URL)" in captured.err
    assert "has no valid port" in captured.err
    assert "is not a valid URL" in captured.out and "Traceback" not in captured.err
