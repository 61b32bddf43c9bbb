"""The configuration of the image services: ``[provider]``, its fallbacks (with the
keys only ComfyUI reads) and the named models of ``[[models]]``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bot.config.sections import OverrideConfig, Section


def _registered_provider(name: str) -> str:
    """A provider name must be in the provider registry (bot.providers.registry)."""
    from bot.providers.registry import SPECS, unknown_provider

    if name not in SPECS:
        raise ValueError(unknown_provider(name))
    return name


# The name of a registered provider (bot.providers.registry, docs/providers.md).
ProviderName = Annotated[str, AfterValidator(_registered_provider)]


# -- ComfyUI (provider.name = "comfyui"; docs/providers.md, "Self-hosting") --------------


def _comfyui_workflow(path: str) -> str:
    """An operator's workflow must be readable and have the nodes the bot fills in, so
    check-config and start-up refuse it, naming what is missing, before any job runs."""
    if path:
        from bot.providers.comfyui_workflow import WorkflowError, load_workflows

        try:
            load_workflows(path)
        except WorkflowError as exc:
            raise ValueError(str(exc)) from None
    return path


# A ComfyUI workflow in API format; empty: the Kontext [dev] workflows shipped with the bot.
WorkflowPath = Annotated[str, AfterValidator(_comfyui_workflow)]


class ComfyUISettings(BaseModel):
    """The keys only ``comfyui`` reads, shared by ``[provider]`` and its fallbacks."""

    workflow: WorkflowPath = ""
    # The whole Authorization header for a ComfyUI behind an authenticating proxy (e.g.
    # "Basic dXNlcjpwYXNz"); secret: prefer KONTEXT_PROVIDER__AUTH_HEADER.
    auth_header: SecretStr = SecretStr("")


# -- end ComfyUI ---------------------------------------------------------------------------


# -- the demo provider (provider.name = "demo"; docs/providers.md, "The demo provider") ------

# What the demo provider is told to do wrong, so an operator can watch refunds work:
# "submit" fails the create (the service is down), "failed" fails the job while it runs,
# "moderation" refuses it as a safety filter would, "never" never finishes it (the job
# times out); "" makes every job succeed.
DemoFailure = Literal["", "submit", "failed", "moderation", "never"]


class DemoSettings(BaseModel):
    """The keys only ``demo`` reads, shared by ``[provider]`` and its fallbacks: they
    exist so a wired-up bot can be tried end to end, failures and refunds included,
    before any image service is paid."""

    demo_seconds: float = Field(2.0, ge=0, le=600)  # how long one demo job "runs"
    demo_fail: DemoFailure = ""
    demo_fail_every: int = Field(1, ge=1)  # 3: every third job gets demo_fail


# -- end of the demo provider ----------------------------------------------------------------


class FallbackProviderConfig(ComfyUISettings, DemoSettings, Section):
    """A further provider account to use when the ones before it are unavailable."""

    name: ProviderName
    base_url: str | None = None  # None: that provider's public API
    api_key: SecretStr = SecretStr("")
    model: str = "black-forest-labs/flux-kontext-pro"


class ProviderConfig(ComfyUISettings, DemoSettings, Section):
    name: ProviderName = "coretoday"
    base_url: str = "https://api.core.today"
    api_key: SecretStr = SecretStr("")
    model: str = "black-forest-labs/flux-kontext-pro"
    request_timeout_seconds: float = Field(30.0, gt=0)
    max_retries: int = Field(4, ge=0, le=10)
    # Tried in order when the provider before is unavailable (after its retries) at
    # submit time; content refusals (moderation) never fail over.
    fallbacks: list[FallbackProviderConfig] = Field(default_factory=list)
    # Webhooks (off while empty): the public base URL under which the bot's webhook
    # listener is reachable; the provider is told .../webhooks/<provider>/<job>.
    webhook_base_url: str = ""
    webhook_secret: SecretStr = SecretStr("")  # Replicate's whsec_ signing secret
    webhook_host: str = "0.0.0.0"  # noqa: S104 - providers must reach it
    webhook_port: int = Field(8081, ge=0, le=65535)

    @model_validator(mode="after")
    def _distinct_fallbacks(self) -> ProviderConfig:
        names = [self.name, *(fallback.name for fallback in self.fallbacks)]
        if len(set(names)) != len(names):
            raise ValueError(
                "each provider may appear once: the primary and every fallback need different names"
            )
        from bot.providers.registry import SPECS

        for fallback in self.fallbacks:
            if SPECS[fallback.name].key_required and not fallback.api_key.get_secret_value():
                raise ValueError(f"the fallback provider '{fallback.name}' needs an api_key")
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


# -- [[models]] (docs/configuration.md, bot.credits.models) ------------------------------------


class ModelConfig(Section):
    """One ``[[models]]`` entry: a model people choose with ``--model NAME``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
    # The provider's model id; per provider where they differ (``ids``); empty: each
    # provider's own configured ``model``.
    model: str = ""
    ids: dict[str, str] = Field(default_factory=dict)
    cost_per_image: int = Field(ge=0)
    default: bool = False
    # The configured providers (primary or fallbacks) that serve it; empty: all of them.
    providers: list[str] = Field(default_factory=list)
    # Only where a credits.overrides entry (or an admin's stored policy) lists it.
    restricted: bool = False
    # Per reference image beyond the first (docs/models.md); 0: one price per job.
    cost_per_extra_image: int = Field(default=0, ge=0)
    # edit | upscale: an upscaler is used by ``--upscale N`` only (docs/models.md).
    kind: Literal["edit", "upscale"] = "edit"
    # The most images one job may carry; overrides the profile of the model id (for a
    # model the bot does not know). None: the shipped profile's own limit.
    max_images: int | None = Field(default=None, ge=1, le=10)


def check_models(
    models: list[ModelConfig], providers: list[str], overrides: list[OverrideConfig]
) -> None:
    """The ``[[models]]`` list as a whole: unique names, one default, providers that
    exist. Raises ``ValueError`` with the operator's words."""
    if not models:
        for override in overrides:
            if override.models:
                raise ValueError(
                    f"credits.overrides ({override.scope}): models needs a [[models]] list"
                )
        return
    seen: set[str] = set()
    for entry in models:
        key = entry.name.lower()
        if key in seen:
            raise ValueError(f"models: the name '{entry.name}' is given twice; names must differ")
        seen.add(key)
    defaults = [m.name for m in models if m.default]
    if len(defaults) != 1:
        raise ValueError(
            "models: exactly one model needs default = true"
            + (f" (now: {', '.join(defaults)})" if defaults else " (now: none)")
        )
    known = ", ".join(providers)
    for entry in models:
        for name in [*entry.providers, *entry.ids]:
            if name not in providers:
                raise ValueError(
                    f"models ({entry.name}): the provider '{name}' is not configured "
                    f"(provider.name or provider.fallbacks: {known})"
                )
        if entry.default and entry.restricted:
            raise ValueError(f"models ({entry.name}): the default model cannot be restricted")
        if entry.kind == "upscale":
            _check_upscaler(entry, entry.providers or providers)
    for override in overrides:
        for name in override.models:
            if name.lower() not in seen:
                raise ValueError(
                    f"credits.overrides ({override.scope}): no model named '{name}' "
                    f"(models: {', '.join(m.name for m in models)})"
                )


def _check_upscaler(entry: ModelConfig, serving: list[str]) -> None:
    """An upscaler is never the default edit model, and each provider serving it must
    have that upscaler (bot.credits.model_profiles.UPSCALERS; docs/models.md)."""
    from bot.credits.model_profiles import NO_UPSCALER, UPSCALERS, upscale_profile

    if entry.default:
        raise ValueError(
            f"models ({entry.name}): an upscale model cannot be the default; "
            "mark an edit model default = true"
        )
    for provider in serving:
        if provider in NO_UPSCALER:
            raise ValueError(
                f'models ({entry.name}): kind = "upscale" cannot be served by '
                f"'{provider}': its public docs list no upscaler (docs/models.md); "
                'serve it with providers = ["replicate"] or a ComfyUI'
            )
        model_id = entry.ids.get(provider) or entry.model
        known = ", ".join(m for p, m in UPSCALERS if p == provider and m != "*")
        if not any(p == provider for p, _ in UPSCALERS):
            raise ValueError(
                f'models ({entry.name}): kind = "upscale" cannot be served by '
                f"'{provider}' yet: the bot has no upscaler there (docs/models.md); "
                'serve it with providers = ["replicate"]'
            )
        if not model_id or upscale_profile(provider, model_id) is None:
            raise ValueError(
                f"models ({entry.name}): the bot knows no upscaler {model_id!r} at "
                f"'{provider}'"
                + (f" (it knows: {known})" if known else "")
                + "; set model to one (docs/models.md)"
            )


# -- end of [[models]] ------------------------------------------------------------------
