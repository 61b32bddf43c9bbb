"""Build the configured providers from their specs (``bot.providers.registry``)."""

from __future__ import annotations

from bot.config import Settings
from bot.errors import ConfigError
from bot.providers.base import Provider, ProviderCapabilities
from bot.providers.registry import SPECS, spec_for


def capabilities_for(settings: Settings) -> ProviderCapabilities:
    return ProviderCapabilities(
        max_input_bytes=settings.images.max_input_bytes,
        cost_per_image=settings.credits.cost_per_image,
    )


def base_url_for(settings: Settings) -> str:
    """The configured URL, or the chosen provider's own when ``provider.base_url`` is
    another provider's public API: the operator switched ``provider.name`` and left
    ``base_url`` at its (core.today) default."""
    config = settings.provider
    spec = spec_for(config.name)
    others = {other.default_base_url for other in SPECS.values() if other is not spec}
    if config.base_url in others:
        return spec.default_base_url
    return config.base_url


def build_fallbacks(settings: Settings) -> list[Provider]:
    """The operator's further providers, in the order they are tried."""
    config = settings.provider
    providers: list[Provider] = []
    for fallback in config.fallbacks:
        spec = spec_for(fallback.name)
        providers.append(
            spec.provider_class(
                base_url=(fallback.base_url or spec.default_base_url).rstrip("/"),
                api_key=fallback.api_key.get_secret_value(),
                model=fallback.model,
                capabilities=capabilities_for(settings),
                request_timeout=config.request_timeout_seconds,
                max_retries=config.max_retries,
                **(spec.options(fallback) if spec.options else {}),
            )
        )
    return providers


def build_provider(settings: Settings) -> Provider:
    config = settings.provider
    spec = spec_for(config.name)
    if spec.key_required and not config.api_key.get_secret_value():
        raise ConfigError(
            f"provider.api_key: not set. Give the {spec.key_label} in the config "
            "file or, better, as KONTEXT_PROVIDER__API_KEY"
        )
    return spec.provider_class(
        base_url=base_url_for(settings),
        api_key=config.api_key.get_secret_value(),
        model=config.model,
        capabilities=capabilities_for(settings),
        request_timeout=config.request_timeout_seconds,
        max_retries=config.max_retries,
        **(spec.options(config) if spec.options else {}),
    )
