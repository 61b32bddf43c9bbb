"""Discord: /kontext and friends through discord.py's app commands, views and cogs.

The adapter is imported on first use, so the platform registry can read this package's
entry (``platform.py``) without discord.py installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]


def __getattr__(name: str) -> Any:
    if name == "DiscordAdapter":
        from adapters.discord.adapter import DiscordAdapter

        return DiscordAdapter
    raise AttributeError(name)
