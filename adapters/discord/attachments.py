"""Input images from Discord: what a job stores about one, and how it is read again.

Discord's CDN URLs are signed and expire (about a day), so an attachment that came with
a message also stores that message's ids: if the URL no longer works (a Re-roll the next
day), the message is fetched again for a fresh URL.
"""

from __future__ import annotations

import json

import discord

from bot.domain import AttachmentSource
from bot.errors import UserInputError
from bot.i18n import N_, _, number

_GONE_MESSAGE = N_(
    "That image is no longer available on Discord (the message or file was deleted). "
    "Post it again to edit it."
)


def is_image(attachment: discord.Attachment) -> bool:
    return (attachment.content_type or "").startswith("image/")


def source_of(
    attachment: discord.Attachment, *, channel_id: int | None = None, message_id: int | None = None
) -> AttachmentSource:
    locator = {"url": attachment.url, "id": str(attachment.id)}
    if channel_id is not None and message_id is not None:
        locator |= {"channel": str(channel_id), "message": str(message_id)}
    return AttachmentSource(
        name=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        locator=json.dumps(locator),
    )


def sources_of(message: discord.Message) -> list[AttachmentSource]:
    """Every file of a message, images or not: the conversation layer picks the input
    and names a file it cannot edit instead of quietly ignoring it."""
    return [
        source_of(attachment, channel_id=message.channel.id, message_id=message.id)
        for attachment in message.attachments
    ]


def first_image(message: discord.Message, prefix: str = "") -> AttachmentSource | None:
    """The message's first image; with ``prefix``, the first whose file name starts with
    it (a group of variations names each ``kontext-<job>-<k>``), else the first."""
    images = [a for a in message.attachments if is_image(a)]
    chosen = next((a for a in images if prefix and a.filename.startswith(prefix)), None)
    chosen = chosen or (images[0] if images else None)
    if chosen is None:
        return None
    return source_of(chosen, channel_id=message.channel.id, message_id=message.id)


async def referenced_image(message: discord.Message) -> AttachmentSource | None:
    """The image of the message this one replies to (how a chain of edits goes on)."""
    found = await referenced_message(message)
    return first_image(found) if found is not None else None


async def referenced_message(message: discord.Message) -> discord.Message | None:
    """The message this one replies to, from the cache or fetched; None without one."""
    reference = message.reference
    if reference is None or reference.message_id is None:
        return None
    resolved = reference.resolved
    if not isinstance(resolved, discord.Message):
        try:
            resolved = await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException:
            return None
    return resolved


def _too_large(name: str, size: int, max_bytes: int) -> UserInputError:
    return UserInputError(
        _("'{name}' is {size} MB; the limit is {limit} MB.").format(
            name=name,
            size=number(round(size / 1e6, 1), "0.0"),
            limit=number(round(max_bytes / 1e6)),
        ),
        detail=f"attachment is {size} bytes, limit {max_bytes}",
    )


async def fetch(client: discord.Client, source: AttachmentSource, max_bytes: int) -> bytes:
    """Read through discord.py's own CDN request, after checking the declared size."""
    if source.size is not None and source.size > max_bytes:
        raise _too_large(source.name, source.size, max_bytes)
    locator = json.loads(source.locator)
    try:
        data = await client.http.get_from_cdn(locator["url"])
    except (discord.NotFound, discord.Forbidden):
        if "message" not in locator:
            raise UserInputError(_(_GONE_MESSAGE), detail="attachment gone from the CDN") from None
        data = await _refetch(client, locator)
    if len(data) > max_bytes:
        raise _too_large(source.name, len(data), max_bytes)
    return data


async def _refetch(client: discord.Client, locator: dict[str, str]) -> bytes:
    channel = client.get_partial_messageable(int(locator["channel"]))
    try:
        message = await channel.fetch_message(int(locator["message"]))
        for attachment in message.attachments:
            if str(attachment.id) == locator["id"]:
                return await client.http.get_from_cdn(attachment.url)
    except (discord.NotFound, discord.Forbidden):
        pass
    raise UserInputError(_(_GONE_MESSAGE), detail="attachment gone from its message")
