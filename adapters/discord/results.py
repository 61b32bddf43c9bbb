"""What the buttons on a result do: Re-roll, Edit again and Delete.

They are pressed on the result message and on a history answer alike, long after the
edit (components.py keeps the job id in the button); so each action starts from the
stored job, never from memory.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
import structlog

from adapters.discord import attachments
from adapters.discord.reply import NO_PINGS
from bot.domain import SEED_MAX, AttachmentSource

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = structlog.get_logger("kontext.discord")


class ResultButtons:
    """The ``ButtonHandler`` of components.py, on the adapter as ``buttons``."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter

    async def reroll(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Same input and prompt, a new seed; the one who clicks pays."""
        job = await self.adapter.service.job(job_id)
        if job is None:
            await interaction.response.send_message(
                "I no longer have that edit's details, so I can't re-roll it.", ephemeral=True
            )
            return
        options = replace(job.options, seed=random.randint(0, SEED_MAX))
        await self.adapter.edit_from_interaction(
            interaction, prompt=job.prompt, options=options, sources=job.attachments
        )

    async def edit_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Multi-turn editing: the result becomes the input of the next edit. From a
        history answer (no image on the message the button is on) the input is the
        result where it was posted, as its delivery recorded it."""
        source = attachments.first_image(interaction.message) if interaction.message else None
        if source is None:
            source = await self._delivered_image(job_id)
        if source is None:
            await interaction.response.send_message(
                "That result's image is gone, so there is nothing to edit.", ephemeral=True
            )
            return
        # The next edit keeps the model of the one it continues (preselected).
        job = await self.adapter.service.job(job_id)
        model = job.options.model if job is not None else None
        inputs = self.adapter.conversation.edit_again_inputs(source, job)
        await interaction.response.send_modal(
            self.adapter.prompt_modal("Edit again", inputs, model=model)
        )

    async def _delivered_image(self, job_id: str) -> AttachmentSource | None:
        job = await self.adapter.service.job(job_id)
        where = job.delivered if job is not None else None
        image = where.get("image") if where else None
        return AttachmentSource.from_json(image) if isinstance(image, Mapping) else None

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The status message's Cancel: the conversation decides (requester or admin)
        and words the answer, for the clicker alone."""

        async def platform_admin() -> bool:
            return self.adapter.is_platform_admin(interaction)

        text = await self.adapter.conversation.cancel(
            self.adapter.user_of(interaction), job_id, platform_admin
        )
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)

    async def delete_result(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """Through the button's own interaction (a deferred update, then DELETE
        ``@original``, which for a component is the message it is on): that works in
        channels the bot cannot see, where the bot token's delete answers 403."""
        job = await self.adapter.service.job(job_id)
        clicker = self.adapter.user_of(interaction)
        owner = job is not None and job.user.user == clicker.user
        platform_admin = self.adapter.is_platform_admin(interaction)
        admin = self.adapter.service.is_admin(clicker, platform_admin=platform_admin)
        if not (owner or admin) or interaction.message is None:
            await interaction.response.send_message(
                "Only the person who asked for this image or an admin can delete it.",
                ephemeral=True,
            )
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
        # History no longer links to it nor offers its buttons.
        await self.adapter.service.forget_delivery(job_id)
