"""The provider registry: one spec per provider feeds the factory, config and webhooks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.providers.factory import base_url_for, build_fallbacks, build_provider
from bot.providers.registry import SPECS, ProviderSpec, spec_for
from tests.support import make_settings

DEFAULT_BASE_URL = "https://api.core.today"  # provider.base_url's default in the config


@pytest.mark.parametrize("spec", SPECS.values(), ids=list(SPECS))
async def test_the_factory_builds_each_registered_provider(
    tmp_path: Path, spec: ProviderSpec
) -> None:
    settings = make_settings(
        tmp_path, DEFAULT_BASE_URL, provider={"name": spec.name, "api_key": "k-123"}
    )
    provider = build_provider(settings)
    try:
        assert type(provider) is spec.provider_class
        # The runner names webhook paths by provider.name: it must be the spec's name.
        assert provider.name == spec.name
        assert base_url_for(settings) == spec.default_base_url
        assert provider.base_url == spec.default_base_url  # type: ignore[attr-defined]
    finally:
        await provider.aclose()


@pytest.mark.parametrize("spec", SPECS.values(), ids=list(SPECS))
async def test_the_factory_builds_each_registered_fallback(
    tmp_path: Path, spec: ProviderSpec
) -> None:
    primary = next(name for name in SPECS if name != spec.name)
    settings = make_settings(
        tmp_path,
        "http://127.0.0.1:9",
        provider={
            "name": primary,
            "api_key": "k-1",
            "fallbacks": [{"name": spec.name, "api_key": "k-2"}],
        },
    )
    (fallback,) = build_fallbacks(settings)
    try:
        assert type(fallback) is spec.provider_class
        assert fallback.base_url == spec.default_base_url  # type: ignore[attr-defined]
    finally:
        await fallback.aclose()


def test_an_operators_own_base_url_is_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:9", provider={"name": "replicate"})
    assert base_url_for(settings) == "http://127.0.0.1:9"


KEYED = [spec for spec in SPECS.values() if spec.key_required]


@pytest.mark.parametrize("spec", KEYED, ids=[spec.name for spec in KEYED])
def test_a_missing_key_names_the_providers_own_key(tmp_path: Path, spec: ProviderSpec) -> None:
    settings = make_settings(tmp_path, provider={"name": spec.name, "api_key": ""})
    with pytest.raises(ConfigError) as info:
        build_provider(settings)
    assert spec.key_label in str(info.value)


def test_an_unknown_name_never_becomes_another_provider() -> None:
    """The factory's own guard, for settings built without validation."""
    with pytest.raises(ConfigError) as info:
        spec_for("openai")
    assert "choose one of: bfl, comfyui, coretoday, demo, replicate" in str(info.value)


def test_a_self_hosted_provider_needs_no_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, provider={"name": "comfyui", "api_key": ""})
    assert build_provider(settings).name == "comfyui"
