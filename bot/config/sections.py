"""The configuration's plain sections: storage, credits, jobs, images, the platforms,
ops, the dashboard and logging (the provider sections and ``[[models]]`` are in
``providers.py``). Key names are a public contract (DESIGN.md): add, never rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from bot.credits.limits import config_field
from bot.credits.periods import Period
from bot.i18n import SHIPPED, match


class Section(BaseModel):
    # A misspelt key in an operator's file must not be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StorageConfig(Section):
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


class OverrideConfig(Section):
    """One ``[[credits.overrides]]`` entry: an allowance (and/or a pause) for a scope."""

    scope: str
    allowance: int | None = Field(None, ge=0)
    period: Period | None = None
    paused: bool = False
    # Restricted models ([[models]] with restricted = true) allowed in this scope.
    models: list[str] = Field(default_factory=list)

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        from bot.credits.scopes import parse_scope
        from bot.errors import UserInputError

        try:
            return parse_scope(value)
        except UserInputError as exc:
            raise ValueError(exc.user_message) from None


class CreditsConfig(Section):
    cost_per_image: int = Field(120, ge=0)
    # The operator's limits (bot.credits.limits: defaults and bounds there).
    allowance: int = config_field("allowance")
    period: Period = config_field("period")
    admins: list[str] = Field(default_factory=list)
    max_balance: int = config_field("max_balance")
    budget: int = config_field("budget")
    # The period the shared budget counts over; "": the allowance's ``period`` (so a
    # daily allowance can have a monthly budget: issue 29).
    budget_period: Literal["", "daily", "weekly", "monthly", "never"] = ""
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


class JobsConfig(Section):
    max_concurrent: int = Field(8, ge=1, le=1000)
    per_user_concurrent: int = config_field("per_user_concurrent")  # a limit (bot.credits.limits)
    timeout_seconds: float = Field(300.0, gt=0)
    lease_seconds: float = Field(60.0, gt=0)
    poll_initial_seconds: float = Field(2.0, gt=0)
    poll_max_seconds: float = Field(5.0, gt=0)
    delivery_attempts: int = Field(3, ge=1, le=10)
    # A result the platform rate-limits ("slow down", HTTP 429) is kept and posted when
    # the platform allows, for up to this long; only then is it refunded.
    delivery_deadline_seconds: float = Field(3600.0, gt=0)
    shutdown_grace_seconds: float = Field(30.0, ge=0)
    # Jobs downloading, validating and uploading their input at once: bounds memory in
    # a burst (each holds its image, up to images.max_input_bytes, a few times over).
    max_preparing: int = Field(8, ge=1, le=1000)
    # Step progress from the provider (ComfyUI's sampler steps): at most one
    # "step 12 of 28" message per job this often.
    progress_interval_seconds: float = Field(1.5, ge=0.0, le=60.0)
    # ``--n COUNT``: the most variations one request may ask (each a job of its own,
    # charged on its own, posted together); 1 turns variations off.
    max_variations: int = Field(4, ge=1, le=4)


class ImagesConfig(Section):
    max_input_bytes: int = Field(20_000_000, gt=0)
    max_input_pixels: int = Field(20_000_000, gt=0)
    # The sum of one edit's inputs when it carries several images.
    max_total_input_bytes: int = Field(50_000_000, gt=0)
    max_output_bytes: int = Field(50_000_000, gt=0)


class SlackConfig(Section):
    enabled: bool = False
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretStr = SecretStr("")
    app_token: SecretStr = SecretStr("")
    signing_secret: SecretStr = SecretStr("")
    api_base_url: str = "https://slack.com/api/"
    file_hosts: list[str] = Field(default_factory=lambda: ["files.slack.com"])
    http_host: str = "0.0.0.0"  # noqa: S104 - HTTP mode must accept Slack's requests
    http_port: int = Field(3000, ge=0, le=65535)  # 0: any free port (tests)
    # Someone opens the app's Messages tab and the DM is still empty: the bot says what
    # it does, once (the app_home_opened event of the manifests); false: it stays quiet.
    welcome: bool = True
    # Pacing within Slack's rate limits (https://docs.slack.dev/apis/web-api/rate-limits),
    # the documented figures as defaults: chat.postMessage per channel per second, and
    # each method's calls per minute by its tier. false: no pacing (slack_sdk still
    # retries a 429 after Retry-After).
    rate_limits: bool = True
    post_message_per_second: float = Field(1.0, gt=0)
    tier2_per_minute: float = Field(20.0, gt=0)
    tier3_per_minute: float = Field(50.0, gt=0)
    tier4_per_minute: float = Field(100.0, gt=0)


class DiscordConfig(Section):
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
    # Post one short welcome in a server's system channel when the bot joins it (once
    # per server, where it may send messages); false: join silently.
    welcome: bool = True
    # Interaction edits and follow-ups (status, results) in flight per channel at once:
    # they share one webhook's rate limit (https://discord.com/developers/docs/topics/
    # rate-limits), so a burst in one channel queues here instead of in 429s.
    max_concurrent_edits_per_channel: int = Field(4, ge=1, le=50)

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


class OpsConfig(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(9090, ge=0, le=65535)


# --- [dashboard]: the operator's web page (bot/dashboard) ---
class DashboardConfig(Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)  # 0: any free port (tests)
    # HTTP Basic, user "admin"; prefer KONTEXT_DASHBOARD__PASSWORD. Required when enabled.
    password: SecretStr = SecretStr("")
    # The address admins open it at (behind your proxy), linked from Slack's Home tab
    # for admins; empty: no link.
    public_url: str = ""


# --- end [dashboard] ---


class I18nConfig(Section):
    """``[i18n]``: the language when neither the platform nor an admin names one the bot
    has (bot.i18n.SHIPPED; docs/languages.md)."""

    default: str = "en"

    @field_validator("default")
    @classmethod
    def _shipped(cls, value: str) -> str:
        found = match(value)
        if found is None:
            raise ValueError(f"no catalog for {value!r}; the bot speaks {', '.join(SHIPPED)}")
        return found


class LogConfig(Section):
    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
