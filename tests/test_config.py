"""Config: TOML + env overrides, clear errors (exit 2), masked secrets, documented keys."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.app import build_core
from bot.cli import main
from bot.config import Settings, effective_config, load_settings, mask_url_password
from bot.errors import ConfigError
from tests.support import make_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("KONTEXT_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_match_design_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.storage.url == "sqlite:///./kontext.db"
    assert settings.provider.name == "coretoday"
    assert settings.provider.base_url == "https://api.core.today"
    assert settings.provider.model == "black-forest-labs/flux-kontext-pro"
    assert settings.credits.cost_per_image == 120
    assert settings.credits.allowance == 1200
    assert settings.credits.period == "daily"
    assert settings.slack.api_base_url == "https://slack.com/api/"
    assert settings.slack.file_hosts == ["files.slack.com"]
    assert settings.slack.http_port == 3000
    assert settings.ops.port == 9090
    assert settings.log.format == "text"


def test_example_file_documents_every_key_with_its_default() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    defaults = Settings().model_dump(mode="json")
    for section, values in defaults.items():
        if isinstance(values, list):
            continue  # [[models]]: an optional list, shown commented out (own test)
        assert section in example, f"[{section}] missing from config.example.toml"
        for key, default in values.items():
            assert key in example[section], f"{section}.{key} missing from config.example.toml"
            documented = example[section][key]
            if key in {"api_key", "bot_token", "app_token", "signing_secret", "token"}:
                assert documented == ""
            elif key.endswith("_dir"):
                assert Path(documented) == Path(default)
            else:
                assert documented == default, f"{section}.{key}: example {documented!r}"
    for section, values in example.items():
        for key in values:
            assert key in defaults[section], f"{section}.{key} documented but not a setting"


def test_file_values_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        '[provider]\napi_key = "from-file"\nbase_url = "http://127.0.0.1:9/"\n'
        '[credits]\nallowance = 500\nperiod = "weekly"\n',
    )
    monkeypatch.setenv("KONTEXT_PROVIDER__API_KEY", "from-env-secret")
    monkeypatch.setenv("KONTEXT_CREDITS__COST_PER_IMAGE", "60")
    settings = load_settings(path)
    assert settings.provider.api_key.get_secret_value() == "from-env-secret"
    assert settings.provider.base_url == "http://127.0.0.1:9"
    assert settings.credits.allowance == 500
    assert settings.credits.period == "weekly"
    assert settings.credits.cost_per_image == 60


def test_kontext_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[credits]\nallowance = 7\n")
    monkeypatch.setenv("KONTEXT_CONFIG", str(path))
    assert load_settings().credits.allowance == 7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[credits]\nperiod = "hourly"\n', "credits.period"),
        ("[credits]\nallowance = -5\n", "credits.allowance"),
        ('[provider]\nname = "openai"\n', "provider.name"),
        (
            '[provider]\nname = "openai"\n',
            "unknown provider 'openai'; choose one of: bfl, comfyui, coretoday, demo, replicate",
        ),
        (
            '[[provider.fallbacks]]\nname = "replicat"\napi_key = "k"\n',
            "provider.fallbacks.0.name: Value error, unknown provider 'replicat'; choose one of",
        ),
        ('[provider]\nbase_url = "ftp://x"\n', "provider.base_url"),
        ('[storage]\nurl = "mysql://x"\n', "storage.url"),
        ("[storage]\npool_size = 0\n", "storage.pool_size"),
        ("[slack]\nhttp_port = 70000\n", "slack.http_port"),
        ('[provider]\napi_kee = "x"\n', "provider.api_kee: unknown key"),
        ('[credits]\nadmins = ["not-a-ref"]\n', "credits.admins"),
        ("[jobs]\npoll_initial_seconds = 9\npoll_max_seconds = 1\n", "poll_max_seconds"),
        (
            '[[provider.fallbacks]]\nname = "coretoday"\napi_key = "k"\n',
            "different names",
        ),
        ('[[provider.fallbacks]]\nname = "bfl"\n', "'bfl' needs an api_key"),
        ('[slack]\nenabled = true\nbot_token = "xoxb-1"\n', "slack.app_token is required"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert expected in str(info.value)


def test_an_unknown_provider_from_the_environment_is_refused_naming_the_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.providers.registry import SPECS

    monkeypatch.setenv("KONTEXT_PROVIDER__NAME", "openai")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""))
    message = str(info.value)
    assert "provider.name" in message and "KONTEXT_PROVIDER__NAME" in message
    assert all(name in message for name in SPECS)


def test_invalid_env_value_names_the_env_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONTEXT_CREDITS__ALLOWANCE", "lots")
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""))
    assert "credits.allowance" in str(info.value)
    assert "KONTEXT_CREDITS__ALLOWANCE" in str(info.value)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[provider\nname="))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_masking_hides_secrets_and_url_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONTEXT_PROVIDER__API_KEY", "cdt_topsecretvalue")
    monkeypatch.setenv("KONTEXT_STORAGE__URL", "postgresql://bot:hunter22@db/kontext")
    settings = load_settings(write(tmp_path, ""))
    shown = effective_config(settings)
    assert shown["provider"]["api_key"] == "***"
    assert shown["slack"]["bot_token"] == ""
    assert "hunter22" not in str(shown)
    assert "cdt_topsecretvalue" not in str(shown)
    assert mask_url_password("sqlite:///./x.db") == "sqlite:///./x.db"


def test_check_config_cli_prints_masked_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KONTEXT_SLACK__BOT_TOKEN", "xoxb-1234567890-secret")
    # Without a provider key run would refuse this config, and so does check-config now.
    monkeypatch.setenv("KONTEXT_PROVIDER__API_KEY", "k-123")
    path = write(tmp_path, "[credits]\nallowance = 2400\n")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "allowance = 2400" in out
    assert 'bot_token = "***"' in out
    assert "xoxb-1234567890-secret" not in out


def test_check_config_cli_exits_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[credits]\ncost_per_image = "free"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "credits.cost_per_image" in err
    assert "Traceback" not in err


async def test_pool_size_reaches_the_engine(tmp_path: Path) -> None:
    core = await build_core(make_settings(tmp_path, storage={"pool_size": 3}), with_runner=False)
    try:
        pool = core.db.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 3)  # type: ignore[attr-defined]
    finally:
        await core.close()


def test_check_config_names_the_platforms_from_the_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[discord]\nenabled = true\ntoken = "x"\n[provider]\nname = "demo"\n')
    assert main(["check-config", "--config", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "# platforms this config runs: console, discord; not enabled: slack" in lines


def test_every_secret_in_the_config_is_redacted_by_type() -> None:
    from bot.config import Settings, secret_values

    settings = Settings.model_validate(
        {
            "provider": {
                "api_key": "main-key",
                "fallbacks": [{"name": "bfl", "api_key": "fallback-key"}],
            },
            "slack": {"bot_token": "xoxb-1", "signing_secret": "sig"},
            "discord": {"token": "dtok"},
        }
    )
    assert set(secret_values(settings)) >= {"main-key", "fallback-key", "xoxb-1", "sig", "dtok"}
