"""The Discord platform's entry in the registry (see bot/chat/platforms.py); discord.py is
imported only when Discord is enabled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.chat.platforms import Platform, PlatformSpec

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.jobs.service import KontextService


def _build(settings: Settings, service: KontextService) -> Platform:
    from adapters.discord.adapter import DiscordAdapter

    return DiscordAdapter(settings.discord, service, data_dir=settings.storage.data_dir)


SPEC = PlatformSpec(
    name="discord", enabled=lambda settings: settings.discord.enabled, build=_build, extra="discord"
)
