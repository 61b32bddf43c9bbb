"""Discord: /kontext and friends through discord.py's app commands, views and cogs."""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
