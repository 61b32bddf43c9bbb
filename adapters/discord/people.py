"""Who asked and where, as the core names them: Discord users as ``UserRef``s (``dm`` for
direct messages) and the channel and roles that quota overrides are set on."""

from __future__ import annotations

import discord

from bot.domain import RequestContext, UserRef

PLATFORM = "discord"


def user_ref(guild_id: int | None, user_id: int) -> UserRef:
    return UserRef(PLATFORM, str(guild_id) if guild_id else "dm", str(user_id))


def request_context(
    channel_id: int | None, author: discord.User | discord.Member
) -> RequestContext:
    """The channel and the member's roles: quotas can be set per channel and per role."""
    roles = getattr(author, "roles", None) or []
    return RequestContext(
        channel=str(channel_id) if channel_id else None,
        roles=tuple(str(role.id) for role in roles if not role.is_default()),
    )
