"""Every provider the bot can use, as one small declarative spec each.

The spec is the only place a provider's name is tied to its code: the factory builds
from it, config validation refuses a name that is not here (naming the choices), and
the webhook endpoint takes its verification from it. Adding a provider means writing
its module and adding one ``ProviderSpec`` to ``SPECS`` (docs/development.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from bot.errors import ConfigError
from bot.providers.base import Provider, WebhookVerifier
from bot.providers.bfl import BflProvider
from bot.providers.comfyui import ComfyUIProvider
from bot.providers.coretoday import CoreTodayProvider
from bot.providers.demo import DEFAULT_BASE_URL as DEMO_BASE_URL
from bot.providers.demo import DemoProvider
from bot.providers.replicate import ReplicateProvider, verify_replicate_webhook


class ProviderSettings(Protocol):
    """What a provider's own settings offer (``[provider]`` or a fallback entry)."""

    workflow: str

    @property
    def demo_seconds(self) -> float: ...

    @property
    def demo_fail(self) -> str: ...

    @property
    def demo_fail_every(self) -> int: ...

    @property
    def auth_header(self) -> Any: ...


def comfyui_options(config: ProviderSettings) -> dict[str, Any]:
    return {"workflow": config.workflow, "auth_header": config.auth_header.get_secret_value()}


def demo_options(config: ProviderSettings) -> dict[str, Any]:
    return {
        "seconds": config.demo_seconds,
        "fail": config.demo_fail,
        "fail_every": config.demo_fail_every,
    }


@dataclass(frozen=True)
class ProviderSpec:
    """What the rest of the bot needs to know about one provider."""

    name: str  # provider.name in the config; also the webhook path segment
    # The provider's class; built with the keyword arguments of bot.providers.factory.
    provider_class: Callable[..., Provider]
    default_base_url: str  # its public API, used when provider.base_url is not given
    key_label: str  # how the operator's key is called in messages and docs
    key_required: bool = True
    # Checks a webhook's authenticity under provider.webhook_secret; None: the provider
    # does not sign its webhooks, so a webhook is only ever a hint to poll (bot.server.webhooks).
    verify_webhook: WebhookVerifier | None = None
    # The provider's own constructor arguments from its settings (ComfyUI's workflow).
    options: Callable[[ProviderSettings], dict[str, Any]] | None = None


SPECS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ProviderSpec(
                "coretoday", CoreTodayProvider, "https://api.core.today", "core.today API key"
            ),
            ProviderSpec("bfl", BflProvider, "https://api.bfl.ai", "BFL API key"),
            ProviderSpec(
                "replicate",
                ReplicateProvider,
                "https://api.replicate.com",
                "Replicate API token",
                verify_webhook=verify_replicate_webhook,
            ),
            ProviderSpec(
                "comfyui",
                ComfyUIProvider,
                "http://127.0.0.1:8188",
                "ComfyUI proxy credential",
                key_required=False,
                options=comfyui_options,
            ),
            # Offline and free: Pillow looks labelled DEMO (bot.providers.demo).
            ProviderSpec(
                "demo",
                DemoProvider,
                DEMO_BASE_URL,
                "demo provider (needs no key)",
                key_required=False,
                options=demo_options,
            ),
        )
    }
)


def provider_names() -> tuple[str, ...]:
    return tuple(sorted(SPECS))


def unknown_provider(name: str) -> str:
    """The message for a provider name that is not registered, naming the choices."""
    return f"unknown provider {name!r}; choose one of: {', '.join(provider_names())}"


def spec_for(name: str) -> ProviderSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(f"provider.name: {unknown_provider(name)}") from None
