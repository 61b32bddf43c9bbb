"""The Slack platform's entry in the registry (see bot/chat/platforms.py); slack_bolt is
imported only when Slack is enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.chat.platforms import Platform, PlatformSpec

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.jobs.service import KontextService


def _build(settings: Settings, service: KontextService) -> Platform:
    from adapters.slack.adapter import SlackAdapter

    return SlackAdapter(settings.slack, service)


SPEC = PlatformSpec(
    name="slack", enabled=lambda settings: settings.slack.enabled, build=_build, extra="slack"
)
