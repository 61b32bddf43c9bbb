"""Talking back in Discord: one status message edited in place (queued, editing, the
result), throttled so that progress never provokes a rate limit.

The status message is either an interaction's response (edited through the interaction
webhook, whose token lasts 15 minutes) or a reply the bot posted in an art channel.
Everything needed is in the job's stored reply target, so a job finished after a
restart is answered in the same place; one that outlives its interaction token is
posted as a plain channel message instead.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

import discord
import structlog

from adapters.discord.components import result_view
from bot.domain import EditResult, Job
from bot.images import fit_to_byte_limit

log = structlog.get_logger("kontext.discord")

# Discord says 15 minutes; keep a margin for the request in flight.
TOKEN_LIFETIME_SECONDS = 14 * 60
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
_STAGES = {"queued": "⏳ Queued", "editing": "🎨 Editing"}
# Statuses that mean "the webhook is gone" (expired token, deleted message).
_GONE = (401, 403, 404)


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DiscordReply:
    """``target`` keys: ``kind`` ("interaction" or "channel"), ``channel``, ``user``,
    ``message`` (the status message id), and for interactions ``application``,
    ``token``, ``expires_at`` (epoch seconds); ``upload_limit`` in bytes."""

    def __init__(
        self,
        client: discord.Client,
        target: Mapping[str, Any],
        *,
        interval: float,
        last_edits: MutableMapping[str, float],
    ) -> None:
        self.client = client
        self.target = target
        self.interval = interval
        # Shared by every reply of the adapter: the time of each status message's last
        # edit, so that the adapter's "queued" and the runner's "editing" are throttled
        # together.
        self._last_edits = last_edits
        self._pending: str | None = None
        self._flush: asyncio.Task[None] | None = None

    @property
    def _message_key(self) -> str:
        return f"{self.target.get('channel')}:{self.target.get('message')}"

    def _token_alive(self) -> bool:
        return (
            self.target.get("kind") == "interaction"
            and float(self.target.get("expires_at", 0)) > time.time()
        )

    # -- the Reply protocol ---------------------------------------------------------------------

    async def progress(self, job: Job, stage: str) -> None:
        text = _STAGES.get(stage, stage.capitalize())
        await self.status(f"{text}… `{short(job.prompt, 150)}`")

    async def status(self, text: str) -> None:
        """Edit the status message, at most once per ``interval``; a newer text replaces
        one still waiting for its turn."""
        wait = self._last_edits.get(self._message_key, 0.0) + self.interval - time.monotonic()
        if wait <= 0:
            await self._edit_status(content=text)
            return
        self._pending = text
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        text, self._pending = self._pending, None
        if text is not None:
            await self._edit_status(content=text)

    def _cancel_pending(self) -> None:
        self._pending = None
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()

    async def deliver(self, result: EditResult, *, maybe_delivered: bool = False) -> None:
        # Editing the status message again is idempotent; ``maybe_delivered`` is not
        # looked at (the fallback to a new channel message can still repeat).
        self._cancel_pending()
        job = result.job
        limit = int(self.target.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        # Leave room for the multipart envelope and the embed.
        room = max(limit - 64 * 1024, limit // 2)
        data, content_type = await asyncio.to_thread(
            fit_to_byte_limit, result.image, max_bytes=room
        )
        filename = result.filename
        if content_type == "image/jpeg" and not filename.lower().endswith((".jpg", ".jpeg")):
            filename = filename.rsplit(".", 1)[0] + ".jpg"
        embed = result_embed(result, filename)
        view = result_view(job.id)
        mention = f"<@{self.target['user']}>"
        file = discord.File(io.BytesIO(data), filename=filename)
        if await self._edit_status(
            content=mention, embed=embed, attachments=[file], view=view, raise_other=True
        ):
            return
        # The token expired or the status message is gone: a new message, same channel.
        channel = self.client.get_partial_messageable(int(self.target["channel"]))
        file = discord.File(io.BytesIO(data), filename=filename)
        await channel.send(content=mention, embed=embed, file=file, view=view)

    async def fail(self, job: Job, message: str) -> None:
        await self.refuse(message, prompt=job.prompt)

    async def refuse(self, message: str, *, prompt: str) -> None:
        """A failed job, or a request the core refused before storing anything."""
        self._cancel_pending()
        text = f"❌ {message}"
        if self._token_alive():
            # Errors are the requester's business: swap the public "thinking" message
            # for an ephemeral one.
            webhook = self._webhook()
            try:
                await webhook.send(f"{text}\n`{short(prompt, 150)}`", ephemeral=True)
                await webhook.delete_message(int(self.target["message"]))
                return
            except discord.HTTPException as exc:
                log.warning("ephemeral failure notice failed", status=exc.status)
        if await self._edit_status(content=f"<@{self.target['user']}> {text}"):
            return
        await self._channel_message(f"<@{self.target['user']}> {text}")

    async def tell(self, text: str) -> None:
        """Privately while the interaction lasts, else a mention in the channel."""
        if self._token_alive():
            try:
                await self._webhook().send(text, ephemeral=True)
                return
            except discord.HTTPException as exc:
                log.warning("ephemeral notice failed", status=exc.status)
        await self._channel_message(f"<@{self.target['user']}> {text}")

    async def _channel_message(self, text: str) -> None:
        try:
            channel = self.client.get_partial_messageable(int(self.target["channel"]))
            await channel.send(text)
        except discord.HTTPException as exc:
            log.warning("channel message failed", status=exc.status)

    # -- transport -------------------------------------------------------------------------------

    def _webhook(self) -> discord.Webhook:
        """The interaction's webhook, built as ``Interaction.followup`` builds it (type 3,
        an application webhook, which alone may send ephemeral messages), from stored
        ids instead of a live ``Interaction``."""
        payload = {
            "id": self.target["application"],
            "type": 3,
            "token": self.target["token"],
        }
        return discord.Webhook.from_state(data=payload, state=self.client._connection)  # type: ignore[arg-type]

    async def _edit_status(self, *, raise_other: bool = False, **fields: Any) -> bool:
        """Edit the status message; False when it can no longer be edited (token expired,
        message deleted). Other failures are logged, or raised with ``raise_other``."""
        message = self.target.get("message")
        if message is None:
            return False
        try:
            if self.target.get("kind") == "interaction":
                if not self._token_alive():
                    return False
                await self._webhook().edit_message(int(message), **fields)
            else:
                channel = self.client.get_partial_messageable(int(self.target["channel"]))
                await channel.get_partial_message(int(message)).edit(**fields)
        except discord.HTTPException as exc:
            if exc.status in _GONE:
                return False
            if raise_other:
                raise
            log.warning("status edit failed", status=exc.status, code=exc.code)
            return True
        finally:
            self._last_edits[self._message_key] = time.monotonic()
        return True


def result_embed(result: EditResult, filename: str) -> discord.Embed:
    job = result.job
    embed = discord.Embed(description=short(job.prompt, 4000), colour=discord.Colour.blurple())
    embed.add_field(name="Seed", value=str(job.seed) if job.seed is not None else "unknown")
    embed.add_field(name="Aspect ratio", value=job.options.aspect_ratio or "as input")
    embed.add_field(name="Credits", value=f"{job.cost} used · {result.balance_after} left")
    embed.add_field(name="Time", value=f"{result.elapsed_seconds:.1f} s")
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(
        text=f"job {job.id} · Edit again to keep editing this result, or reply to it "
        "with !kontext <change>"
    )
    return embed
