"""Configuration: one TOML file plus ``KONTEXT_<SECTION>__<KEY>`` environment overrides.

The section and key names are a public contract (DESIGN.md): operators' files use them,
so keys may be added here but never renamed. Secrets are ``SecretStr`` so that printing,
logging or dumping a config can never show them by accident.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.errors import ConfigError
from bot.limits import config_field

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_PATH_ENV = "KONTEXT_CONFIG"
ENV_PREFIX = "KONTEXT_"


class _Section(BaseModel):
    # A misspelt key in an operator's file must not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageConfig(_Section):
    url: str = "sqlite:///./kontext.db"
    data_dir: Path = Path("./kontext-data")
    keep_images_hours: float = Field(0.0, ge=0)
    keep_jobs_days: float = Field(30.0, ge=0)
    pool_size: int = Field(10, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value


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


class FallbackProviderConfig(ComfyUISettings, _Section):
    """A further provider account to use when the ones before it are unavailable."""

    name: ProviderName
    base_url: str | None = None  # None: that provider's public API
    api_key: SecretStr = SecretStr("")
    model: str = "black-forest-labs/flux-kontext-pro"


class ProviderConfig(ComfyUISettings, _Section):
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


class OverrideConfig(_Section):
    """One ``[[credits.overrides]]`` entry: an allowance (and/or a pause) for a scope."""

    scope: str
    allowance: int | None = Field(None, ge=0)
    period: Literal["daily", "weekly", "monthly", "never"] | None = None
    paused: bool = False
    # Restricted models ([[models]] with restricted = true) allowed in this scope.
    models: list[str] = Field(default_factory=list)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        from bot.errors import UserInputError
        from bot.policies import parse_scope

        try:
            return parse_scope(value)
        except UserInputError as exc:
            raise ValueError(exc.user_message) from None


class CreditsConfig(_Section):
    cost_per_image: int = Field(120, ge=0)
    # The operator's limits (bot.limits: defaults and bounds there).
    allowance: int = config_field("allowance")
    period: Literal["daily", "weekly", "monthly", "never"] = config_field("period")
    admins: list[str] = Field(default_factory=list)
    max_balance: int = config_field("max_balance")
    budget: int = config_field("budget")
    cooldown_seconds: float = config_field("cooldown_seconds")
    # Also treat the platform's own admins as bot admins: Discord members with Manage
    # Server, Slack workspace admins and owners.
    platform_admins: bool = False
    # Allowances per workspace, channel, role or user; the most generous that applies
    # wins (a user's own override wins outright). Admins can change them at run time.
    overrides: list[OverrideConfig] = Field(default_factory=list)

    @field_validator("admins")
    @classmethod
    def _user_refs(cls, value: list[str]) -> list[str]:
        from bot.domain import UserRef
        from bot.errors import UserInputError

        for ref in value:
            try:
                UserRef.parse(ref)
            except UserInputError as exc:
                raise ValueError(exc.user_message) from None
        return value


class JobsConfig(_Section):
    max_concurrent: int = Field(8, ge=1, le=1000)
    per_user_concurrent: int = config_field("per_user_concurrent")  # a limit (bot.limits)
    timeout_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    poll_initial_seconds: float = Field(2.0, gt=0)
    poll_max_seconds: float = Field(5.0, gt=0)
    delivery_attempts: int = Field(3, ge=1, le=10)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # Jobs downloading, validating and uploading their input at once: bounds memory in
    # a burst (each holds its image, up to images.max_input_bytes, a few times over).
    max_preparing: int = Field(8, ge=1, le=1000)
    # Step progress from the provider (ComfyUI's sampler steps): at most one
    # "step 12 of 28" message per job this often.
    progress_interval_seconds: float = Field(1.5, ge=0.0, le=60.0)


class ImagesConfig(_Section):
    max_input_bytes: int = Field(20_000_000, gt=0)
    max_input_pixels: int = Field(20_000_000, gt=0)
    max_output_bytes: int = Field(50_000_000, gt=0)


class SlackConfig(_Section):
    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretStr = SecretStr("")
    app_token: SecretStr = SecretStr("")
    signing_secret: SecretStr = SecretStr("")
    api_base_url: str = "https://slack.com/api/"
    file_hosts: list[str] = Field(default_factory=lambda: ["files.slack.com"])
    http_host: str = "0.0.0.0"  # noqa: S104 - HTTP mode must accept Slack's requests
    http_port: int = Field(3000, ge=0, le=65535)  # 0: any free port (tests)


class DiscordConfig(_Section):
    enabled: bool = False
    token: SecretStr = SecretStr("")
    guild_ids: list[int] = Field(default_factory=list)
    # REST base (a proxy, or the tests' fake); the gateway comes from GET /gateway/bot.
    api_base_url: str = "https://discord.com/api/v10"
    # Art channels: plain messages there that mention the bot or start with !kontext
    # are requests. Needs the privileged message content intent.
    channels: list[int] = Field(default_factory=list)
    progress_interval_seconds: float = Field(1.5, ge=0.0, le=60.0)
    # Sharding (docs/discord.md): 0 lets Discord decide (GET /gateway/bot); with
    # shard_ids this process runs only those shards of shard_count, so several
    # processes on one database serve one bot. The process running shard 0 syncs commands.
    shard_count: int = Field(0, ge=0)
    shard_ids: list[int] = Field(default_factory=list)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL such as https://discord.com/api/v10")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _shards_consistent(self) -> DiscordConfig:
        """Refused here rather than by Discord's close code 4010 at connect time: a
        shard id only means something against a fixed shard count, the same in every
        process of the bot."""
        if not self.shard_ids:
            return self
        if self.shard_count == 0:
            raise ValueError(
                "discord.shard_ids needs discord.shard_count (the bot's total number of "
                "shards, the same in every process); 0 (automatic) cannot be split"
            )
        wrong = sorted({i for i in self.shard_ids if not 0 <= i < self.shard_count})
        if wrong:
            raise ValueError(
                f"discord.shard_ids: {wrong} not in 0..{self.shard_count - 1} "
                f"(discord.shard_count is {self.shard_count})"
            )
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("discord.shard_ids: each shard id may appear once")
        return self

    @property
    def syncs_commands(self) -> bool:
        """Command sync is the job of the one process that runs shard 0 (or of the only
        process): two processes syncing the same definitions would spend Discord's daily
        command-create allowance twice and race each other."""
        return not self.shard_ids or 0 in self.shard_ids


class OpsConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)


# --- [dashboard]: the operator's web page (bot/dashboard) ---
class DashboardConfig(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)  # 0: any free port (tests)
    # HTTP Basic, user "admin"; prefer KONTEXT_DASHBOARD__PASSWORD. Required when enabled.
    password: SecretStr = SecretStr("")


# --- end [dashboard] ---


class LogConfig(_Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


# -- [[models]] (docs/configuration.md, bot.models) ------------------------------------


class ModelConfig(_Section):
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
    for override in overrides:
        for name in override.models:
            if name.lower() not in seen:
                raise ValueError(
                    f"credits.overrides ({override.scope}): no model named '{name}' "
                    f"(models: {', '.join(m.name for m in models)})"
                )


# -- end of [[models]] ------------------------------------------------------------------


class Settings(BaseSettings):
    """The whole configuration; the TOML file path is given by ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    storage: StorageConfig = Field(default_factory=StorageConfig)
    provider: ProviderConfig = Field(default_factory=ProviderConfig)
    credits: CreditsConfig = Field(default_factory=CreditsConfig)
    jobs: JobsConfig = Field(default_factory=JobsConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    discord: DiscordConfig = Field(default_factory=DiscordConfig)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    models: list[ModelConfig] = Field(default_factory=list)

    toml_path: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _slack_credentials(self) -> Settings:
        slack = self.slack
        if not slack.enabled:
            return self
        needed = [("bot_token", slack.bot_token)]
        needed.append(
            ("app_token", slack.app_token)
            if slack.mode == "socket"
            else ("signing_secret", slack.signing_secret)
        )
        for key, value in needed:
            if not value.get_secret_value():
                raise ValueError(
                    f"slack.{key} is required when slack.enabled is true in {slack.mode} "
                    f"mode (give it as KONTEXT_SLACK__{key.upper()})"
                )
        return self

    @model_validator(mode="after")
    def _models_consistent(self) -> Settings:
        providers = [self.provider.name, *(f.name for f in self.provider.fallbacks)]
        check_models(self.models, providers, self.credits.overrides)
        return self

    @model_validator(mode="after")
    def _dashboard_password(self) -> Settings:
        """The dashboard shows every user's spend: it never runs without a password."""
        if self.dashboard.enabled and not self.dashboard.password.get_secret_value():
            raise ValueError(
                "dashboard.password is required when dashboard.enabled is true "
                "(give it as KONTEXT_DASHBOARD__PASSWORD)"
            )
        return self

    @model_validator(mode="after")
    def _jobs_consistent(self) -> Settings:
        if self.jobs.poll_max_seconds < self.jobs.poll_initial_seconds:
            raise ValueError(
                "jobs.poll_max_seconds must not be smaller than jobs.poll_initial_seconds"
            )
        return self


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The file to read and whether the operator named it (then it must exist)."""
    if explicit:
        return Path(explicit), True
    from_env = os.environ.get(CONFIG_PATH_ENV)
    if from_env:
        return Path(from_env), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read, merge and validate the configuration, or raise ``ConfigError`` that says why."""
    config_path, required = resolve_config_path(path)
    toml_path: Path | None = None
    if config_path.is_file():
        try:
            with config_path.open("rb") as handle:
                tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot be read: {exc.strerror}") from None
        toml_path = config_path
    elif required:
        raise ConfigError(f"{config_path}: config file not found")

    # A subclass per load carries the file path to ``settings_customise_sources``
    # without global state, so tests can load several configs side by side.
    bound = type("BoundSettings", (Settings,), {"toml_path": toml_path})
    try:
        loaded: Settings = bound()
    except ValidationError as exc:
        source = str(config_path) if toml_path else "environment and defaults"
        raise ConfigError(describe_validation_error(exc, source)) from None
    return loaded


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem, naming the key as the operator writes it and its env twin."""
    lines = [f"invalid configuration ({source}):"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling against config.example.toml)"
        if not loc:
            # A check across sections (its message names the keys): no key to point at.
            lines.append(f"  {message.removeprefix('Value error, ')}")
            continue
        env_name = ENV_PREFIX + "__".join(part.upper() for part in loc[:2])
        lines.append(f"  {key}: {message} (file key {key} or env {env_name})")
    return "\n".join(lines)


def mask_url_password(url: str) -> str:
    """Database URLs may carry a password; show everything but it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def effective_config(settings: Settings) -> dict[str, Any]:
    """The merged configuration with every secret masked, for ``check-config`` and logs.

    A set secret shows as ``***`` and an unset one as empty, so an operator can see
    whether the environment variable reached the bot without the value being shown.
    """
    data = settings.model_dump(mode="json")
    for section_name in type(settings).model_fields:
        section = getattr(settings, section_name)
        if not isinstance(section, BaseModel):
            continue  # the [[models]] list holds no secrets
        for key in type(section).model_fields:
            value = getattr(section, key)
            if isinstance(value, SecretStr):
                data[section_name][key] = "***" if value.get_secret_value() else ""
    data["storage"]["url"] = mask_url_password(settings.storage.url)
    return data


def secret_values(settings: Settings) -> list[str]:
    """Every secret set anywhere in the config (fallback providers' keys included), for
    the log redactor: found by type, so a new secret key is redacted without a list to
    keep in step."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            if value.get_secret_value():
                found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return found
