"""Configuration: one TOML file plus ``KONTEXT_<SECTION>__<KEY>`` environment overrides.

The section and key names are a public contract (DESIGN.md): operators' files use them,
so keys may be added here but never renamed. Secrets are ``SecretStr`` so that printing,
logging or dumping a config can never show them by accident.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
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
    SettingsError,
    TomlConfigSettingsSource,
)

from bot.chat.presets import layout_problems
from bot.config.envsource import LenientEnvSource, env_error_line
from bot.config.presets import (
    PresetConfig,
    ResultsConfig,
    merge_presets,
    shipped_preset_configs,
)
from bot.config.providers import (
    ComfyUISettings,
    FallbackProviderConfig,
    ModelConfig,
    ProviderConfig,
    ProviderName,
    check_models,
)
from bot.config.sections import (
    CreditsConfig,
    DashboardConfig,
    DiscordConfig,
    I18nConfig,
    ImagesConfig,
    JobsConfig,
    LogConfig,
    OpsConfig,
    OverrideConfig,
    Section,
    SlackConfig,
    StorageConfig,
)
from bot.errors import ConfigError

__all__ = [
    "CONFIG_PATH_ENV",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "ComfyUISettings",
    "CreditsConfig",
    "DashboardConfig",
    "DiscordConfig",
    "FallbackProviderConfig",
    "I18nConfig",
    "ImagesConfig",
    "JobsConfig",
    "LogConfig",
    "ModelConfig",
    "OpsConfig",
    "OverrideConfig",
    "PresetConfig",
    "ProviderConfig",
    "ProviderName",
    "ResultsConfig",
    "Section",
    "Settings",
    "SlackConfig",
    "StorageConfig",
    "describe_validation_error",
    "effective_config",
    "load_settings",
    "mask_url_password",
    "resolve_config_path",
    "secret_values",
]

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_PATH_ENV = "KONTEXT_CONFIG"
ENV_PREFIX = "KONTEXT_"


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
    i18n: I18nConfig = Field(default_factory=I18nConfig)
    models: list[ModelConfig] = Field(default_factory=list)
    # The shipped presets, changed, removed or added to by [[presets]] (bot.config.presets).
    presets: list[PresetConfig] = Field(default_factory=shipped_preset_configs)
    results: ResultsConfig = Field(default_factory=ResultsConfig)

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
        # Lists may be comma-separated in the environment (bot.config.envsource).
        sources: list[PydanticBaseSettingsSource] = [init_settings, LenientEnvSource(settings_cls)]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    @field_validator("presets", mode="before")
    @classmethod
    def _merge_presets(cls, value: Any) -> Any:
        return merge_presets(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """The checks across sections, all of them at once: an operator fixing a config
        sees every problem in one go, not one per start (issue 29)."""
        problems: list[str] = []
        for check in (
            self._slack_credentials,
            self._models_consistent,
            self._dashboard_password,
            self._jobs_consistent,
            self._presets_consistent,
        ):
            try:
                check()
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _slack_credentials(self) -> None:
        slack = self.slack
        if not slack.enabled:
            return
        needed = [("bot_token", slack.bot_token)]
        needed.append(
            ("app_token", slack.app_token)
            if slack.mode == "socket"
            else ("signing_secret", slack.signing_secret)
        )
        missing = [
            f"slack.{key} is required when slack.enabled is true in {slack.mode} "
            f"mode (give it as KONTEXT_SLACK__{key.upper()})"
            for key, value in needed
            if not value.get_secret_value()
        ]
        if missing:
            raise ValueError("\n  ".join(missing))

    def _models_consistent(self) -> None:
        providers = [self.provider.name, *(f.name for f in self.provider.fallbacks)]
        check_models(self.models, providers, self.credits.overrides)

    def _dashboard_password(self) -> None:
        """The dashboard shows every user's spend: it never runs without a password."""
        if self.dashboard.enabled and not self.dashboard.password.get_secret_value():
            raise ValueError(
                "dashboard.password is required when dashboard.enabled is true "
                "(give it as KONTEXT_DASHBOARD__PASSWORD)"
            )

    def _jobs_consistent(self) -> None:
        if self.jobs.poll_max_seconds < self.jobs.poll_initial_seconds:
            raise ValueError(
                "jobs.poll_max_seconds must not be smaller than jobs.poll_initial_seconds"
            )

    def _presets_consistent(self) -> None:
        """A preset's model is a configured one; the result buttons fit every platform."""
        problems: list[str] = []
        names = {m.name.lower(): m for m in self.models}
        for preset in self.presets:
            if preset.model is None:
                continue
            chosen = names.get(preset.model.lower())
            if chosen is None:
                known = ", ".join(m.name for m in self.models) or "none: no [[models]] list"
                problems.append(
                    f"presets ({preset.name}): no model named '{preset.model}' (models: {known})"
                )
            elif chosen.kind != "edit":
                problems.append(
                    f"presets ({preset.name}): the model '{preset.model}' is an "
                    f"{chosen.kind} model; a preset needs an edit model"
                )
        problems += layout_problems(self.results.buttons, [p.name for p in self.presets])
        if problems:
            raise ValueError("\n  ".join(problems))


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
    except SettingsError as exc:
        raise ConfigError(env_error_line(exc)) from None
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
