"""What ``run`` refuses, found before it starts: one list for ``check-config`` and ``run``.

``check-config`` once said "fine" to configs that ``run`` then refused (no provider key)
or ran wrongly (Discord enabled without a token logged in with an empty one), and took
URLs without a scheme and tokens pasted into the wrong field (issue 29). Both commands
now call ``problems``: every problem at once, each with its key, its environment twin
and the fix, so a config that passes here is one ``run`` accepts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import ENV_PREFIX, Settings

# Where each platform's token is found, said next to a missing or misplaced one.
_SLACK_TOKENS = {
    "bot_token": (
        "xoxb-",
        "the Bot User OAuth Token: your app at api.slack.com/apps, OAuth & Permissions",
    ),
    "app_token": (
        "xapp-",
        "the App-Level Token with connections:write: Basic Information, App-Level Tokens",
    ),
}
_KNOWN_PREFIXES = ("xoxb-", "xoxp-", "xapp-", "xoxe-", "xoxa-")
_SDK = {"slack": ("slack_bolt", "slack"), "discord": ("discord", "discord")}


@dataclass(frozen=True)
class Problem:
    """One thing ``run`` would refuse or get wrong, in the operator's words."""

    key: str  # as written in the file: "discord.token", "provider.fallbacks"
    message: str
    fix: str

    @property
    def env(self) -> str:
        section, _, rest = self.key.partition(".")
        name = rest.split("[", 1)[0].split(".", 1)[0]
        return f"{ENV_PREFIX}{section.upper()}" + (f"__{name.upper()}" if name else "")

    def line(self) -> str:
        return f"{self.key} ({self.env}): {self.message}; {self.fix}"


def _url_problem(key: str, url: str, example: str) -> Problem | None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        return Problem(key, f"{url!r} has no valid port after its host", f"write it as {example}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Problem(
            key,
            f"{url!r} is not a full URL (it needs http:// or https:// and a host)",
            f"write it as {example}",
        )
    return None


def problems(settings: Settings) -> list[Problem]:
    """Everything ``run`` would refuse in this config (empty: it starts)."""
    from bot.providers.registry import spec_for

    found: list[Problem | None] = []
    provider = settings.provider
    spec = spec_for(provider.name)
    if spec.key_required and not provider.api_key.get_secret_value():
        found.append(
            Problem(
                "provider.api_key",
                f"not set, and provider.name = {provider.name!r} needs the {spec.key_label}",
                "give it as KONTEXT_PROVIDER__API_KEY, or try the bot first with "
                'provider.name = "demo" (free, offline)',
            )
        )
    if provider.name != "demo":
        found.append(_url_problem("provider.base_url", provider.base_url, spec.default_base_url))
    for index, fallback in enumerate(provider.fallbacks):
        if fallback.base_url:
            found.append(
                _url_problem(
                    f"provider.fallbacks[{index}].base_url",
                    fallback.base_url,
                    spec_for(fallback.name).default_base_url,
                )
            )
    if provider.webhook_base_url:
        found.append(
            _url_problem(
                "provider.webhook_base_url",
                provider.webhook_base_url,
                "https://bot.example.com/hooks",
            )
        )
    found.extend(_slack(settings))
    found.extend(_discord(settings))
    for platform, (module, extra) in _SDK.items():
        if getattr(settings, platform).enabled and importlib.util.find_spec(module) is None:
            found.append(
                Problem(
                    f"{platform}.enabled",
                    f"{platform} is enabled but its library is not installed",
                    f"pip install 'kontext-bot[{extra}]'",
                )
            )
    return [problem for problem in found if problem is not None]


def _slack(settings: Settings) -> list[Problem | None]:
    slack = settings.slack
    found: list[Problem | None] = [
        _url_problem("slack.api_base_url", slack.api_base_url, "https://slack.com/api/")
    ]
    if not slack.enabled:
        return found
    for key, (prefix, where) in _SLACK_TOKENS.items():
        if key == "app_token" and slack.mode != "socket":
            continue
        value = getattr(slack, key).get_secret_value()
        if value and not value.startswith(prefix):
            # Only a known token prefix is shown: the rest of a secret never is.
            known = next((p for p in _KNOWN_PREFIXES if value.startswith(p)), None)
            said = f"starts with {known!r}" if known else f"does not start with {prefix!r}"
            found.append(
                Problem(
                    f"slack.{key}",
                    f"{said}, but a Slack {key.replace('_', ' ')} starts with {prefix!r}",
                    f"use {where}",
                )
            )
    secret = slack.signing_secret.get_secret_value()
    if slack.mode == "http" and secret.startswith(("xoxb-", "xapp-", "xoxp-")):
        found.append(
            Problem(
                "slack.signing_secret",
                "holds a token, not the signing secret",
                "use the Signing Secret: Basic Information, App Credentials",
            )
        )
    return found


def _discord(settings: Settings) -> list[Problem | None]:
    discord = settings.discord
    if not discord.enabled:
        return []
    token = discord.token.get_secret_value()
    if not token:
        return [
            Problem(
                "discord.token",
                "not set, and discord.enabled is true",
                "give the bot token (Developer Portal, your application, Bot, Reset Token) "
                "as KONTEXT_DISCORD__TOKEN",
            )
        ]
    if token.lower().startswith("bot "):
        return [
            Problem(
                "discord.token",
                "starts with 'Bot ': the bot adds that itself",
                "give the token alone",
            )
        ]
    if token.startswith(("xoxb-", "xapp-")):
        return [Problem("discord.token", "holds a Slack token", "give the Discord bot token")]
    return []
