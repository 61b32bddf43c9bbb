"""Talking back in Discord: one status message edited in place (queued, editing, the
result), throttled so that progress never provokes a rate limit.

The status message is an interaction's original response, addressed as ``@original``
through the interaction's webhook (Discord's documented route
``/webhooks/{application}/{token}/messages/@original``), or a reply the bot posted in an
art channel. Both are known to the job's stored target before the message exists (the
adapter reserves first and answers Discord afterwards), so a job finished after a
restart is answered in the same place. While the adapter has not answered yet, the
reply waits for it (``ack``): what the answer became is merged into the target
(``status``: "public", "ephemeral" or "lost"; an art channel's status ``message``).

An ephemeral status message stays the requester's: the result is then posted as a new
public follow-up. A job that outlives the 15-minute token is posted with the bot token
in the channel; where the bot cannot see the channel (403), the requester is told by
direct message and the delivery ends as a refunded failure instead of being retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Mapping, MutableMapping
from typing import Any, TypeVar, cast

import discord
import structlog

from adapters.discord.attachments import is_image, source_of
from adapters.discord.components import group_view, result_view
from adapters.discord.pacing import ChannelSlots, rate_limited
from bot.chat.presets import ResultLayout
from bot.chat.texts import (
    cannot_see_channel,
    fitted_note,
    group_heading,
    group_member_line,
    job_about,
    provider_note,
)
from bot.domain import EditResult, GroupResult, Job
from bot.errors import DeliveryImpossible
from bot.i18n import N_, _, number
from bot.images import fit_upload

log = structlog.get_logger("kontext.discord")

# Discord says 15 minutes; keep a margin for the request in flight.
TOKEN_LIFETIME_SECONDS = 14 * 60
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
ORIGINAL = "@original"
NO_PINGS = discord.AllowedMentions.none()
_STAGES = {"queued": N_("⏳ Queued"), "editing": N_("🎨 Editing")}
# Statuses that mean "the webhook or message is gone" (expired token, deleted message).
_GONE = (401, 404)
_ACK_WAIT_SECONDS = 30.0  # a guard only: the adapter answers within Discord's 3 s

T = TypeVar("T")


def short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pings(user_id: str | int) -> discord.AllowedMentions:
    """The one person a message may ping: the requester (never @everyone, roles, or a
    user named in a prompt)."""
    return discord.AllowedMentions(
        everyone=False, roles=False, users=[discord.Object(id=int(user_id))], replied_user=True
    )


class ChannelUnreachable(DeliveryImpossible):
    """Discord's case of ``DeliveryImpossible``: the bot cannot see the channel and the
    interaction token is gone."""


class DiscordReply:
    """``target`` keys: ``kind`` ("interaction" or "channel"), ``channel``, ``user``,
    ``message`` (``@original``, a status message id, or absent), ``reply_to`` (an art
    channel's request message), for interactions ``application``, ``token``,
    ``expires_at`` (epoch seconds); ``upload_limit`` in bytes."""

    def __init__(
        self,
        client: discord.Client,
        target: Mapping[str, Any],
        *,
        interval: float,
        last_edits: MutableMapping[str, float],
        ack: asyncio.Future[dict[str, Any]] | None = None,
        answered_by: float | None = None,
        slots: ChannelSlots | None = None,
        layout: ResultLayout | None = None,
    ) -> None:
        self.client = client
        # The result's buttons, as the conversation layer lists them (bot.chat.presets).
        self._layout = layout
        # The adapter's: a few of a channel's calls in flight at once (pacing.py).
        self._slots = slots or ChannelSlots(4)
        # For a job another process received: when its interaction must have been
        # answered (Discord allows 3 s), so this process never edits @original before the
        # receiving process has deferred it.
        self._answered_by = answered_by
        self.target = dict(target)
        self.interval = interval
        # Shared by every reply of the adapter: the time of each status message's last
        # edit, so that the adapter's "queued" and the runner's "editing" are throttled
        # together.
        self._last_edits = last_edits
        self._ack = ack
        self._pending: str | None = None
        self._flush: asyncio.Task[None] | None = None
        self._edited: discord.Message | None = None  # what the last status edit made

    @property
    def _message_key(self) -> str:
        return (
            f"{self.target.get('token') or self.target.get('channel')}:{self.target.get('message')}"
        )

    @property
    def _user(self) -> str:
        return str(self.target["user"])

    def _token_alive(self) -> bool:
        return (
            self.target.get("kind") == "interaction"
            and self.target.get("status") != "lost"
            and float(self.target.get("expires_at", 0)) > time.time()
        )

    async def _ready(self) -> None:
        """Wait until the adapter has answered Discord (the status message exists)."""
        if self._ack is None:
            if self._answered_by is not None:
                wait, self._answered_by = self._answered_by - time.time(), None
                if wait > 0:
                    await asyncio.sleep(wait)
            return
        ack, self._ack = self._ack, None
        try:
            self.target.update(await asyncio.wait_for(asyncio.shield(ack), _ACK_WAIT_SECONDS))
        except TimeoutError:
            log.warning("the interaction was not answered in time; using the channel")
            self.target["status"] = "lost"

    # -- the Reply protocol ---------------------------------------------------------------------

    async def progress(self, job: Job, stage: str) -> None:
        text = _(_STAGES[stage]) if stage in _STAGES else stage.capitalize()
        await self._status(f"{text}… `{short(job_about(job), 150)}`")

    async def deliver(
        self, result: EditResult, *, maybe_delivered: bool = False
    ) -> dict[str, Any] | None:
        # Editing the status message again is idempotent; ``maybe_delivered`` is not
        # looked at (the fallback to a new channel message can still repeat).
        posted = await _rate_limits_told(self._post_result(result))
        if posted is None:
            return None
        # Bookkeeping only: the image is posted, so nothing here may fail the delivery.
        try:
            return delivered_at(posted, result.job, self.target.get("channel"))
        except Exception as exc:
            log.warning("could not record where the result is", error=repr(exc))
            return None

    async def _post_result(self, result: EditResult) -> discord.Message | None:
        """Post the result; the message it is now on (None: Discord did not say)."""
        await self._ready()
        self._cancel_pending()
        job = result.job
        limit = int(self.target.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        # Leave room for the multipart envelope and the embed.
        room = max(limit - 64 * 1024, limit // 2)
        # The interaction's ``attachment_size_limit`` (discord.py's
        # ``Interaction.filesize_limit``), stored with the target: fitted to it, and
        # the message says what was done (bot.images.fitting never raises).
        fitted = await asyncio.to_thread(fit_upload, result.image, max_bytes=room)
        data = fitted.data
        filename = result.filename
        if fitted.change and not filename.lower().endswith((".jpg", ".jpeg")):
            filename = filename.rsplit(".", 1)[0] + ".jpg"
        mention = f"<@{self._user}>"
        if fitted.change:
            note = fitted_note(
                "discord", limit, fitted.width, fitted.height, fitted.change == "smaller"
            )
            mention = f"{mention} {note}"
        post: dict[str, Any] = {
            "content": mention,
            "embed": result_embed(result, filename),
            "view": result_view(job.id, self._layout),
            "allowed_mentions": pings(self._user),
        }

        def file() -> discord.File:
            return discord.File(io.BytesIO(data), filename=filename)

        if self._token_alive() and await self._status_is_private():
            # The status message is the requester's alone: the result is public, so it
            # is a new follow-up, and the private status is tidied away.
            async with self._slot():
                message = await self._interaction().followup.send(**post, file=file(), wait=True)
            await self._quietly(self._interaction().delete_original_response())
            return message
        self._edited = None
        if await self._edit_status(attachments=[file()], raise_other=True, **post):
            return self._edited
        # The token expired or the status message is gone: a new message, same channel.
        return await self._post_in_channel(file=file(), **post)

    async def deliver_group(
        self, group: GroupResult, *, maybe_delivered: bool = False
    ) -> dict[str, dict[str, Any]] | None:
        """Every variation in one message (``--n``): its images (Discord takes 10 files a
        message; a group has at most 4), a line per variation (seed, or why it failed and
        its refund), and "Edit #k" / "Re-roll #k" buttons; posted where a single result
        is (the status message, or a new one), so editing it again is harmless."""
        posted = await _rate_limits_told(self._post_group(group))
        if posted is None:
            return None
        try:
            return group_delivered_at(posted, group, self.target.get("channel"))
        except Exception as exc:
            log.warning("could not record where the group is", error=repr(exc))
            return None

    async def _post_group(self, group: GroupResult) -> discord.Message | None:
        await self._ready()
        self._cancel_pending()
        limit = int(self.target.get("upload_limit") or DEFAULT_UPLOAD_LIMIT)
        # The files of one message share the upload limit; leave room for the envelope.
        room = max(limit - 64 * 1024, limit // 2) // max(1, len(group.results))
        fitted: list[tuple[bytes, str]] = []
        for result in group.results:
            # fit_upload never raises: the provider was paid, so the group is posted.
            one = await asyncio.to_thread(fit_upload, result.image, max_bytes=room)
            filename = result.filename
            if one.change and not filename.lower().endswith(f".{one.extension}"):
                filename = filename.rsplit(".", 1)[0] + f".{one.extension}"
            fitted.append((one.data, filename))
        first = group.first
        lines = [
            f"<@{self._user}> `{short(first.prompt, 150)}`",
            group_heading(group),
            *(group_member_line(m) for m in group.members),
        ]
        note = provider_note(first.provider)
        if note:
            lines.append(note)
        post: dict[str, Any] = {
            "content": short("\n".join(lines), 2000),
            "embed": None,
            "view": group_view(
                [(r.job.group_index, r.job.id) for r in group.results], group.results[0].job.id
            ),
            "allowed_mentions": pings(self._user),
        }

        def files() -> list[discord.File]:
            return [discord.File(io.BytesIO(data), filename=name) for data, name in fitted]

        if self._token_alive() and await self._status_is_private():
            async with self._slot():
                message = await self._interaction().followup.send(
                    **{k: v for k, v in post.items() if k != "embed"}, files=files(), wait=True
                )
            await self._quietly(self._interaction().delete_original_response())
            return message
        self._edited = None
        if await self._edit_status(attachments=files(), raise_other=True, **post):
            return self._edited
        return await self._post_in_channel(
            files=files(), **{k: v for k, v in post.items() if k != "embed"}
        )

    async def fail(self, job: Job, message: str) -> None:
        await self._ready()
        self._cancel_pending()
        text = f"❌ {message}\n`{short(job_about(job), 150)}`"
        if self._token_alive():
            interaction = self._interaction()
            try:
                if await self._status_is_private():
                    await interaction.edit_original_response(
                        content=text, embed=None, view=None, allowed_mentions=NO_PINGS
                    )
                    return
                # Errors are the requester's business: the public status message goes,
                # and the reason follows privately (after the delete, so the follow-up
                # cannot become an edit of a still-loading public message).
                await self._delete_status(interaction)
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
                return
            except discord.HTTPException as exc:
                log.warning("private failure notice failed", status=exc.status)
        await self._tell_outside(text)

    async def tell(self, text: str) -> None:
        """Privately while the interaction lasts, else a mention in the channel, else a
        direct message."""
        await self._ready()
        if self._token_alive():
            try:
                await self._interaction().followup.send(
                    text, ephemeral=True, allowed_mentions=NO_PINGS
                )
                return
            except discord.HTTPException as exc:
                log.warning("ephemeral notice failed", status=exc.status)
        await self._tell_outside(text)

    # -- the status message (also the adapter's, for its "queued") -------------------------------

    async def _status(self, text: str) -> None:
        """Edit the status message, at most once per ``interval``; a newer text replaces
        one still waiting for its turn."""
        await self._ready()
        wait = self._last_edits.get(self._message_key, 0.0) + self.interval - time.monotonic()
        if wait <= 0:
            await self._edit_status(content=text, allowed_mentions=NO_PINGS)
            return
        self._pending = text
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        text, self._pending = self._pending, None
        if text is not None:
            await self._edit_status(content=text, allowed_mentions=NO_PINGS)

    def _cancel_pending(self) -> None:
        self._pending = None
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()

    # -- transport -------------------------------------------------------------------------------

    def _slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slots.hold(self.target.get("channel"))

    def _interaction(self) -> discord.Interaction[Any]:
        """The interaction rebuilt from the stored ids, for its public methods
        (``edit_original_response``, ``delete_original_response``, ``followup``):
        those need only the application id and the token."""
        payload = {
            "id": self.target.get("interaction", "0"),
            "type": 2,
            "token": self.target["token"],
            "version": 1,
            "application_id": self.target["application"],
            "attachment_size_limit": int(self.target.get("upload_limit") or DEFAULT_UPLOAD_LIMIT),
        }
        state = self.client._connection
        return discord.Interaction(data=cast(Any, payload), state=state)

    async def _status_is_private(self) -> bool:
        """Whether the interaction's status message is ephemeral. Known from the adapter;
        after a restart, read from the message itself (an edit answers with its flags)."""
        status = str(self.target.get("status"))
        if status in ("public", "ephemeral"):
            return status == "ephemeral"
        if self.target.get("message") != ORIGINAL:
            return False  # stored by an older version: always a public status message
        try:
            message = await self._interaction().edit_original_response(
                content="📤 Posting…", allowed_mentions=NO_PINGS
            )
        except discord.HTTPException:
            return False
        private = bool(message.flags.ephemeral)
        self.target["status"] = "ephemeral" if private else "public"
        return private

    async def _edit_status(self, *, raise_other: bool = False, **fields: Any) -> bool:
        """Edit the status message; False when it can no longer be edited (token expired,
        message deleted, channel hidden). Other failures are logged, or raised with
        ``raise_other``."""
        message = self.target.get("message")
        if message is None:
            return False
        try:
            async with self._slot():
                if self.target.get("kind") == "interaction":
                    if not self._token_alive():
                        return False
                    interaction = self._interaction()
                    if message == ORIGINAL:
                        self._edited = await interaction.edit_original_response(**fields)
                    else:
                        self._edited = await interaction.followup.edit_message(
                            int(message), **fields
                        )
                else:
                    channel = self.client.get_partial_messageable(int(self.target["channel"]))
                    self._edited = await channel.get_partial_message(int(message)).edit(**fields)
        except discord.HTTPException as exc:
            if exc.status in (*_GONE, 403):
                return False
            if raise_other:
                raise
            log.warning("status edit failed", status=exc.status, code=exc.code)
            return True
        finally:
            self._last_edits[self._message_key] = time.monotonic()
        return True

    async def _delete_status(self, interaction: discord.Interaction[Any]) -> None:
        message = self.target.get("message")
        try:
            if message == ORIGINAL:
                await interaction.delete_original_response()
            elif message is not None:
                await interaction.followup.delete_message(int(message))
        except discord.NotFound:
            pass

    async def _post_in_channel(self, **fields: Any) -> discord.Message:
        """A new message with the bot token, as a reply to the art-channel request when
        there is one; a channel the bot cannot see ends the delivery for good."""
        channel = self.client.get_partial_messageable(int(self.target["channel"]))
        reply_to = self.target.get("reply_to")
        if reply_to is not None:
            fields["reference"] = discord.MessageReference(
                message_id=int(reply_to),
                channel_id=int(self.target["channel"]),
                fail_if_not_exists=False,
            )
        try:
            async with self._slot():
                return await channel.send(**fields)
        except discord.Forbidden as exc:
            raise ChannelUnreachable(
                cannot_see_channel(f"<#{self.target['channel']}>"),
                detail=f"discord {exc.status} {exc.code}",
            ) from exc

    async def _tell_outside(self, text: str) -> None:
        """Without the interaction: a mention in the channel; where the bot cannot post
        there, a direct message (the only private way left)."""
        try:
            await self._post_in_channel(
                content=f"<@{self._user}> {text}", allowed_mentions=pings(self._user)
            )
            return
        except ChannelUnreachable:
            note = f"(About your request in <#{self.target['channel']}>, where I can't post.)"
        except discord.HTTPException as exc:
            log.warning("channel message failed", status=exc.status)
            return
        try:
            direct = await self.client.create_dm(discord.Object(id=int(self._user)))
            await direct.send(f"{text}\n{note}", allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            log.warning("direct message failed", status=exc.status, code=exc.code)

    @staticmethod
    async def _quietly(call: Any) -> None:
        try:
            await call
        except discord.HTTPException as exc:
            log.info("tidying the private status failed", status=exc.status)


def result_embed(result: EditResult, filename: str) -> discord.Embed:
    job = result.job
    embed = discord.Embed(description=short(job_about(job), 4000), colour=discord.Colour.blurple())
    seed = str(job.seed) if job.seed is not None else _("unknown")
    embed.add_field(name=_("Seed"), value=seed)
    embed.add_field(name=_("Aspect ratio"), value=job.options.aspect_ratio or _("as input"))
    embed.add_field(
        name=_("Credits"),
        value=_("{cost} used · {left} left").format(cost=job.cost, left=result.balance_after),
    )
    embed.add_field(name=_("Time"), value=f"{number(result.elapsed_seconds, '0.0')} s")
    note = provider_note(job.provider)
    if note:  # a demo result says so (bot.providers.demo)
        embed.add_field(name=_("Demo"), value=note, inline=False)
    embed.set_image(url=f"attachment://{filename}")
    embed.set_footer(
        text=_(
            "job {job} · Edit again to keep editing this result, or reply to it "
            "with !kontext <change>"
        ).format(job=job.id)
    )
    return embed


# -- where a result was posted, for the user's history (issue 19) ----------------------------


def jump_url(guild: str, channel: int | str, message: int | str) -> str:
    """Discord's link to a message: ``@me`` stands for the server in direct messages."""
    return f"https://discord.com/channels/{guild}/{channel}/{message}"


def group_delivered_at(
    message: discord.Message, group: GroupResult, channel_id: Any = None
) -> dict[str, dict[str, Any]]:
    """Where each variation of a posted group is: the one message, and its own image
    (found by the file name the pipeline gave it), for history and Edit again."""
    where: dict[str, dict[str, Any]] = {}
    for result in group.results:
        job = result.job
        place = delivered_at(message, job, channel_id)
        prefix = f"kontext-{job.id[:8]}"
        image = next(
            (a for a in message.attachments if is_image(a) and a.filename.startswith(prefix)),
            None,
        )
        if image is not None:
            channel = place["channel"]
            place["image"] = source_of(
                image, channel_id=int(channel), message_id=message.id
            ).to_json()
        where[job.id] = place
    return where


def delivered_at(message: discord.Message, job: Job, channel_id: Any = None) -> dict[str, Any]:
    """What the core keeps about a posted result: the message's ids and jump URL, and its
    image as an input source (so Edit again from the history works without the message
    the button is on). A message edited through a rebuilt interaction may not know its
    channel object: the channel id the message names, else the reply target's."""
    guild = job.user.workspace if job.user.workspace != "dm" else "@me"
    channel = getattr(getattr(message, "channel", None), "id", None) or channel_id
    where: dict[str, Any] = {
        "guild": guild,
        "channel": str(channel),
        "message": str(message.id),
        "link": jump_url(guild, channel, message.id),
    }
    image = next((a for a in message.attachments if is_image(a)), None)
    if image is not None:
        source = source_of(image, channel_id=int(channel), message_id=message.id)
        where["image"] = source.to_json()
    return where


async def _rate_limits_told(posting: Awaitable[T]) -> T:
    """A post Discord refused for its rate limits is "not yet" for the runner (the result
    is kept and posted when Discord allows); any other refusal goes on as it is."""
    try:
        return await posting
    except discord.HTTPException as exc:
        deferred = rate_limited(exc)
        if deferred is None:
            raise
        raise deferred from exc
