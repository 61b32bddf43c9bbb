"""The platform registry: platforms are found through entry points, their SDKs are
imported only when enabled, and a missing SDK is a config error naming the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.chat import platforms
from bot.chat.platforms import PlatformSpec
from bot.config import Settings
from bot.errors import ConfigError


def test_the_registry_names_every_platform_without_importing_an_sdk() -> None:
    code = (
        "import sys; from bot import platforms; "
        "print(sorted(platforms.registered())); "
        "print(any(m in sys.modules for m in ('discord', 'slack_bolt', 'slack_sdk')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["['console',", "'discord',", "'slack']", "False"]


def test_which_platforms_a_config_enables() -> None:
    settings = Settings.model_validate({"discord": {"enabled": True, "token": "x"}})
    enabled = [s.name for s in platforms.registered().values() if s.enabled(settings)]
    assert enabled == ["console", "discord"]


def test_a_missing_sdk_is_a_config_error_naming_the_extra() -> None:
    def build(settings: object, service: object) -> platforms.Platform:
        raise ModuleNotFoundError("No module named 'matrix_nio'", name="matrix_nio")

    spec = PlatformSpec(name="matrix", enabled=lambda s: True, build=build, extra="matrix")
    with pytest.raises(ConfigError, match=r"matrix_nio.*kontext-bot\[matrix\]"):
        platforms.build(spec, Settings(), None)  # type: ignore[arg-type]
