"""Build the configured provider; the only place that reads ``provider.name``."""

from __future__ import annotations

from bot.config import Settings
from bot.errors import ConfigError
from bot.providers.base import Provider, ProviderCapabilities
from bot.providers.http import HttpProvider

CORETODAY_URL = "https://api.core.today"
DEFAULT_BASE_URLS = {
    "coretoday": CORETODAY_URL,
    "bfl": "https://api.bfl.ai",
    "replicate": "https://api.replicate.com",
}
KEY_NAMES = {
    "coretoday": "core.today API key",
    "bfl": "BFL API key",
    "replicate": "Replicate API token",
}


def capabilities_for(settings: Settings) -> ProviderCapabilities:
    return ProviderCapabilities(
        max_input_bytes=settings.images.max_input_bytes,
        cost_per_image=settings.credits.cost_per_image,
    )


def base_url_for(settings: Settings) -> str:
    """The configured URL, or the chosen provider's own when the operator switched
    ``provider.name`` but left ``base_url`` at its (core.today) default."""
    config = settings.provider
    if config.base_url == CORETODAY_URL and config.name != "coretoday":
        return DEFAULT_BASE_URLS[config.name]
    return config.base_url


def build_fallbacks(settings: Settings) -> list[Provider]:
    """The operator's further providers, in the order they are tried."""
    config = settings.provider
    providers: list[Provider] = []
    for fallback in config.fallbacks:
        provider_class = _provider_class(fallback.name)
        providers.append(
            provider_class(
                base_url=(fallback.base_url or DEFAULT_BASE_URLS[fallback.name]).rstrip("/"),
                api_key=fallback.api_key.get_secret_value(),
                model=fallback.model,
                capabilities=capabilities_for(settings),
                request_timeout=config.request_timeout_seconds,
                max_retries=config.max_retries,
            )
        )
    return providers


def build_provider(settings: Settings) -> Provider:
    config = settings.provider
    if not config.api_key.get_secret_value():
        raise ConfigError(
            f"provider.api_key: not set. Give the {KEY_NAMES[config.name]} in the config "
            "file or, better, as KONTEXT_PROVIDER__API_KEY"
        )
    provider_class = _provider_class(config.name)
    return provider_class(
        base_url=base_url_for(settings),
        api_key=config.api_key.get_secret_value(),
        model=config.model,
        capabilities=capabilities_for(settings),
        request_timeout=config.request_timeout_seconds,
        max_retries=config.max_retries,
    )


def _provider_class(name: str) -> type[HttpProvider]:
    if name == "coretoday":
        from bot.providers.coretoday import CoreTodayProvider

        return CoreTodayProvider
    if name == "bfl":
        from bot.providers.bfl import BflProvider

        return BflProvider
    from bot.providers.replicate import ReplicateProvider

    return ReplicateProvider
