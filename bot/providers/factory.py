"""Build the configured provider; the only place that reads ``provider.name``."""

from __future__ import annotations

from bot.config import Settings
from bot.errors import ConfigError
from bot.providers.base import Provider, ProviderCapabilities


def capabilities_for(settings: Settings) -> ProviderCapabilities:
    return ProviderCapabilities(
        max_input_bytes=settings.images.max_input_bytes,
        cost_per_image=settings.credits.cost_per_image,
    )


def build_provider(settings: Settings) -> Provider:
    config = settings.provider
    if config.name == "coretoday":
        from bot.providers.coretoday import CoreTodayProvider

        if not config.api_key.get_secret_value():
            raise ConfigError(
                "provider.api_key: not set. Give the core.today API key in the config file "
                "or, better, as KONTEXT_PROVIDER__API_KEY"
            )
        return CoreTodayProvider(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value(),
            model=config.model,
            capabilities=capabilities_for(settings),
            request_timeout=config.request_timeout_seconds,
            max_retries=config.max_retries,
        )
    raise ConfigError(
        f"provider.name: '{config.name}' is not available in this version of kontext-bot "
        "yet; use 'coretoday'"
    )
