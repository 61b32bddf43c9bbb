"""The welcome on join: one short message in a server's system channel, once per server.

MEE6 and Midjourney greet a server when they are added and link their help; a bot that
joins silently leaves the person who invited it guessing (issue 29). The text is the
core's (``Conversation.welcome``); here it is only posted, where the bot may send
messages, and remembered in ``storage.data_dir`` so a kick and re-invite, or a restart,
never posts it twice. ``discord.welcome = false`` turns it off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import discord
import structlog

from adapters.discord.reply import NO_PINGS

log = structlog.get_logger("kontext.discord.welcome")


class Welcomed:
    """The servers already greeted: a JSON list beside the command-sync digests."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "discord-welcomed.json"

    def _read(self) -> set[str]:
        try:
            return {str(g) for g in json.loads(self.path.read_text())}
        except (FileNotFoundError, ValueError):
            return set()

    def has(self, guild_id: int) -> bool:
        return str(guild_id) in self._read()

    def add(self, guild_id: int) -> None:
        seen = self._read() | {str(guild_id)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(sorted(seen)))
        partial.replace(self.path)


def channel_for(guild: discord.Guild) -> discord.TextChannel | None:
    """The system channel, when the bot may post there; else nowhere (not some other
    channel: a server that chose no system channel did not ask for bot greetings)."""
    channel = guild.system_channel
    if channel is None:
        return None
    allowed = channel.permissions_for(guild.me)
    return channel if allowed.view_channel and allowed.send_messages else None


async def welcome(guild: discord.Guild, text: str, welcomed: Welcomed) -> bool:
    """Post ``text`` once in ``guild``; True when it was posted now."""
    if await asyncio.to_thread(welcomed.has, guild.id):
        return False
    # Noted before posting: a crash in between must not lead to a second greeting.
    await asyncio.to_thread(welcomed.add, guild.id)
    channel = channel_for(guild)
    if channel is None:
        log.info("joined a server without a system channel the bot may post in", guild=guild.id)
        return False
    try:
        await channel.send(text, allowed_mentions=NO_PINGS)
    except discord.HTTPException as exc:
        log.warning("welcome message failed", guild=guild.id, status=exc.status)
        return False
    log.info("welcomed a new server", guild=guild.id)
    return True
