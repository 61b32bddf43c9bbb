"""How the bot's answers look in Discord: markdown, ``<@id>`` mentions, ``<t:…>`` times.

Discord renders mentions in user-provided text, but every message the bot sends names
exactly who may be pinged (``allowed_mentions``: the requester at most), so a prompt
containing ``@everyone`` or a role mention is shown, never delivered as a ping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import discord

from bot.chat.texts import ChatStyle, CommandNames


class DiscordStyle(ChatStyle):
    workspace_word = "server"
    commands = CommandNames(
        usage="/kontext prompt:<what to change> [image] [aspect_ratio] [seed] [format] [upsample]",
        examples=(
            "/kontext prompt:make it a watercolor image:<your photo>",
            "Edit with Kontext (right-click a message > Apps): edit that message's image",
            "Buttons on a result: Re-roll (new seed), Edit again (keep editing the result), Delete",
            "In art channels: !kontext <change> [--ar RATIO] [--seed N] with an image, or as a "
            "reply to one",
        ),
        info=(
            "/kontext-credits   your balance",
            "/kontext-history   your last 10 edits, with Edit again and Re-roll",
            "/kontext-help   this text",
        ),
        admin=("/kontext-admin grant | ledger | top | allowance | models | pause | resume",),
    )

    def bold(self, text: str) -> str:
        return f"**{text}**"

    def role(self, role_id: str) -> str:
        return f"<@&{role_id}>"

    def when(self, moment: datetime) -> str:
        return f"<t:{int(moment.timestamp())}:R>"

    def link(self, url: str, label: str) -> str:
        return f"[{label}]({url})"


# A message's content holds 2,000 characters, an embed's description 4,096
# (https://discord.com/developers/docs/resources/message#create-message): a long answer
# (ten history lines with their jump URLs) keeps its first line as the content and the
# rest in an embed.
CONTENT_LIMIT = 2000
EMBED_LIMIT = 4096


def long_text(text: str) -> dict[str, Any]:
    """``content``/``embeds`` arguments for an answer of any length up to an embed's."""
    if len(text) <= CONTENT_LIMIT:
        return {"content": text}
    header, _, rest = text.partition("\n")
    return {
        "content": header[:CONTENT_LIMIT],
        "embeds": [discord.Embed(description=rest[:EMBED_LIMIT])],
    }
