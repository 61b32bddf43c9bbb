"""What the buttons on a result do: Re-roll, Edit again, the presets and Delete.

They are pressed on the result message and on a history answer alike, long after the
edit (components.py keeps the job id in the button); so each action starts from the
stored job, never from memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord
import structlog

from adapters.discord import attachments
from adapters.discord.reply import NO_PINGS
from bot.chat import texts
from bot.chat.conversation import Conversation, Said
from bot.domain import AttachmentSource, EditOptions, UserRef
from bot.i18n import _

log = structlog.get_logger("kontext.discord")


class ResultHost(Protocol):
    """What the buttons use of the adapter (``DiscordAdapter`` is one). A Protocol,
    not the adapter's class, so this module does not import the adapter that imports it."""

    @property
    def conversation(self) -> Conversation: ...

    def user_of(self, interaction: discord.Interaction[Any]) -> UserRef: ...

    def platform_admin(
        self, interaction: discord.Interaction[Any]
    ) -> Callable[[], Awaitable[bool]]: ...

    def prompt_modal(
        self, title: str, sources: Sequence[AttachmentSource], *, model: str | None = None
    ) -> discord.ui.Modal: ...

    async def edit_from_interaction(
        self,
        interaction: discord.Interaction[Any],
        *,
        prompt: str,
        options: EditOptions,
        sources: Sequence[AttachmentSource],
    ) -> None: ...


class ResultButtons:
    """The ``ButtonHandler`` of components.py, on the adapter as ``buttons``: each button
    asks the conversation layer what it means and shows the answer."""

    def __init__(self, host: ResultHost) -> None:
        self.host = host

    async def reroll(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Same input and prompt, a new seed; the one who clicks pays."""
        edit = await self.host.conversation.reroll(job_id)
        if isinstance(edit, Said):
            await interaction.response.send_message(edit.text, ephemeral=True)
            return
        await self.host.edit_from_interaction(
            interaction, prompt=edit.prompt, options=edit.options, sources=edit.inputs
        )

    async def apply_preset(
        self, interaction: discord.Interaction[Any], job_id: str, preset: str
    ) -> None:
        """A preset's button or the More… select: that result, the preset's instruction;
        the one who clicks pays (the acknowledgement says how much)."""
        shown = attachments.first_image(interaction.message) if interaction.message else None
        edit = await self.host.conversation.apply_preset(job_id, preset, shown)
        if isinstance(edit, Said):
            await interaction.response.send_message(edit.text, ephemeral=True)
            return
        await self.host.edit_from_interaction(
            interaction, prompt=edit.prompt, options=edit.options, sources=edit.inputs
        )

    async def upscale(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """A result's Upscale: the image on the message the button is on, made larger by
        the upscale model; the one who clicks pays (the acknowledgement says how much)."""
        shown = attachments.first_image(interaction.message) if interaction.message else None
        edit = await self.host.conversation.upscale(job_id, shown)
        if isinstance(edit, Said):
            await interaction.response.send_message(edit.text, ephemeral=True)
            return
        await self.host.edit_from_interaction(
            interaction, prompt=edit.prompt, options=edit.options, sources=edit.inputs
        )

    async def edit_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The result becomes the next edit's input: the image on the message the button
        is on, or (a history answer has none) the result where it was posted."""
        message = interaction.message
        # On a group of variations, "Edit #k" edits image k (named after its job).
        shown = attachments.first_image(message, f"kontext-{job_id[:8]}") if message else None
        nxt = await self.host.conversation.edit_again(job_id, shown)
        if isinstance(nxt, Said):
            await interaction.response.send_message(nxt.text, ephemeral=True)
            return
        await interaction.response.send_modal(
            self.host.prompt_modal(_("Edit again"), list(nxt.inputs), model=nxt.model)
        )

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The status message's Cancel: the conversation decides (requester or admin)
        and words the answer, for the clicker alone."""
        text = await self.host.conversation.cancel(
            self.host.user_of(interaction), job_id, self.host.platform_admin(interaction)
        )
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)

    async def delete_result(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Through the button's own interaction (a deferred update, then DELETE
        ``@original``, which for a component is the message it is on): that works in
        channels the bot cannot see, where the bot token's delete answers 403."""
        conversation = self.host.conversation
        refused = await conversation.may_delete(
            self.host.user_of(interaction), job_id, self.host.platform_admin(interaction)
        )
        if refused is not None or interaction.message is None:
            text = refused.text if refused is not None else _(texts.DELETE_NOT_YOURS)
            await interaction.response.send_message(text, ephemeral=True)
            return
        await interaction.response.defer()
        try:
            await interaction.delete_original_response()
        except discord.NotFound:
            pass  # already gone
        except discord.HTTPException as exc:
            log.warning("deleting a result failed", job_id=job_id, status=exc.status)
            why = "I don't have access here" if exc.status == 403 else f"error {exc.status}"
            await interaction.followup.send(
                f"I couldn't delete that image ({why}).", ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        await conversation.deleted(job_id)
