"""The app commands: ``/kontext``, ``/kontext-credits``, ``/kontext-history``, ``/kontext-help``,
``/kontext-admin ...`` and the "Edit with Kontext" message menu, plus the art-channel
listener. Discord forbids a command that both runs and has subcommands, so credits,
help and admin are commands of their own. Each handler maps its options onto the
adapter, which holds the flow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import discord
import structlog
from discord import app_commands
from discord.app_commands import locale_str
from discord.ext import commands

from adapters.discord import attachments
from adapters.discord.components import MAX_CHOICES, history_view
from adapters.discord.people import user_ref
from adapters.discord.style import long_text
from bot.chat.commands import MAX_VARIATIONS
from bot.chat.conversation import Conversation, Edit, Said
from bot.chat.texts import language_name
from bot.credits.model_profiles import RESOLUTIONS_MP
from bot.credits.models import Catalogue
from bot.domain import ASPECT_RATIOS, SEED_MAX, AttachmentSource, RequestContext, UserRef
from bot.errors import UserInputError
from bot.i18n import SHIPPED, _

log = structlog.get_logger("kontext.discord")
RATIO_CHOICES = [app_commands.Choice(name=r.replace("_", " "), value=r) for r in ASPECT_RATIOS]
FORMAT_CHOICES = [app_commands.Choice(name=f, value=f) for f in ("png", "jpg", "webp")]
RES_CHOICES: list[app_commands.Choice[int]] = [
    app_commands.Choice(name=f"{mp} MP", value=mp) for mp in RESOLUTIONS_MP
]
# ``image2`` … ``image10``: as many as the configured models take (at most 10, issue 26);
# Discord shows optional options only when the user adds them.
EXTRA_IMAGES = range(2, 11)
# ``/kontext-admin language``: each shipped language by its own name (bot.i18n), or auto.
LANGUAGE_CHOICES = [
    app_commands.Choice(name="auto", value="auto"),
    *(app_commands.Choice(name=language_name(code), value=code) for code in SHIPPED),
]
# ``count``: variations (``--n``, issue 27), up to ``jobs.max_variations``.
COUNT_CHOICES: list[app_commands.Choice[int]] = [
    app_commands.Choice(name=str(n), value=n) for n in range(1, MAX_VARIATIONS + 1)
]
PERIOD_CHOICES = [
    app_commands.Choice(name=p, value=p) for p in ("daily", "weekly", "monthly", "never")
]


class CommandHost(Protocol):
    """What the commands use of the adapter (``DiscordAdapter`` is one). A Protocol,
    not the adapter's class, so this module does not import the adapter that imports it."""

    @property
    def conversation(self) -> Conversation: ...

    def user_of(self, interaction: discord.Interaction[Any]) -> UserRef: ...

    def context_of(self, interaction: discord.Interaction[Any]) -> RequestContext: ...

    def platform_admin(
        self, interaction: discord.Interaction[Any]
    ) -> Callable[[], Awaitable[bool]]: ...

    def prompt_modal(
        self, title: str, sources: Sequence[AttachmentSource], *, model: str | None = None
    ) -> discord.ui.Modal: ...

    async def answer_or_edit(
        self, interaction: discord.Interaction[Any], outcome: Said | Edit
    ) -> None: ...

    async def edit_from_message(self, message: discord.Message) -> None: ...


class KontextCog(commands.Cog):
    def __init__(
        self, adapter: CommandHost, tree: app_commands.CommandTree[Any], models: Catalogue
    ) -> None:
        self.adapter = adapter
        self.tree = tree
        self.catalogue = models
        # Context menus cannot be defined in a cog's body; discord.py's documented way is
        # to build one here and add it to the tree.
        self.edit_menu = app_commands.ContextMenu(
            name=locale_str("Edit with Kontext"), callback=self.edit_message_image
        )
        self._model_option()
        self._preset_option()
        self._input_options()

    def _input_options(self) -> None:
        """Only the options the configured models can use: ``image2`` … ``imageN`` for
        N = the largest ``max_images`` among them, ``resolution`` when one has a size,
        and ``webp`` among the formats when one makes it."""
        params = self.kontext._params
        models = self.catalogue.models
        most = min(self.catalogue.max_images, max(EXTRA_IMAGES))
        for n in EXTRA_IMAGES:
            if n > most:
                params.pop(f"image{n}", None)
        if not any(m.main_profile.resolutions for m in models):
            params.pop("resolution", None)
        most_variations = self.adapter.conversation.service.max_variations
        if most_variations <= 1:
            params.pop("count", None)
        else:
            params["count"] = dataclasses.replace(
                params["count"],
                choices=[
                    app_commands.Choice[str | int | float](name=c.name, value=c.value)
                    for c in COUNT_CHOICES
                    if c.value <= most_variations
                ],
            )
        if not any("webp" in m.main_profile.output_formats for m in models):
            params["format"] = dataclasses.replace(
                params["format"],
                choices=[
                    app_commands.Choice[str | int | float](name=c.name, value=c.value)
                    for c in FORMAT_CHOICES
                    if c.value != "webp"
                ],
            )

    def _model_option(self) -> None:
        """The ``model`` option lists the operator's models (known only at run time), on
        this cog's own copy of the command; with one model there is no option, and with
        more than Discord lists it takes a typed name (checked like ``--model``)."""
        params = self.kontext._params
        self._upscale_option()
        if len(self.catalogue.editors) < 2:
            # No edit model to choose (an upscaler is chosen by ``upscale``).
            params.pop("model", None)
            return
        choices = self.catalogue.choices(MAX_CHOICES)
        if not choices:
            return
        params["model"] = dataclasses.replace(
            params["model"],
            choices=[app_commands.Choice(name=label, value=value) for value, label in choices],
        )

    def _preset_option(self) -> None:
        """The ``preset`` option lists the presets in force (bot.chat.presets; the config
        holds at most Discord's 25 choices); without presets there is no option."""
        params = self.kontext._params
        presets = list(self.adapter.conversation.service.presets)
        if not presets:
            params.pop("preset", None)
            return
        params["preset"] = dataclasses.replace(
            params["preset"],
            choices=[
                # A shipped label is translated per locale (translator.py); the
                # operator's own label is shown as written.
                app_commands.Choice[str | int | float](
                    name=locale_str(p.label) if p.translated else p.label, value=p.name
                )
                for p in presets[:MAX_CHOICES]
            ],
        )

    def _upscale_option(self) -> None:
        """``upscale``: the scales of the configured upscaler as choices; no option
        without one (issue 27)."""
        params = self.kontext._params
        upscaler = self.catalogue.upscaler()
        if upscaler is None:
            params.pop("upscale", None)
            return
        params["upscale"] = dataclasses.replace(
            params["upscale"],
            choices=[
                app_commands.Choice[str | int | float](name=f"{n}x", value=n)
                for n in upscaler.scales
            ],
        )

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """A refusal from the core (not an admin, a bad scope) is the user's answer,
        privately; anything else is a bug: logged, and the user told it was ours."""
        original = getattr(error, "original", error)
        if isinstance(original, UserInputError):
            text = original.user_message
        else:
            log.error(
                "discord command failed",
                command=interaction.command.qualified_name if interaction.command else None,
                error=repr(original),
            )
            text = _("Something went wrong on my side; nothing was charged. Please try again.")
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True)

    async def cog_load(self) -> None:
        self.tree.add_command(self.edit_menu)

    async def cog_unload(self) -> None:
        self.tree.remove_command(self.edit_menu.name, type=self.edit_menu.type)

    @app_commands.command(
        name="kontext", description=locale_str("Edit an image with FLUX.1 Kontext")
    )
    @app_commands.describe(
        prompt=locale_str("What to change, e.g. make it a watercolor"),
        image=locale_str("The image to edit (leave out to make one from text)"),
        aspect_ratio=locale_str("Shape of the result (default: like the input)"),
        seed=locale_str("Same seed + same prompt = same result"),
        format=locale_str("File format of the result"),
        upsample=locale_str("Let the model expand your prompt"),
        model=locale_str("Which model makes the image (each has its own price)"),
        resolution=locale_str("Size of the result in megapixels (models that have one)"),
        preset=locale_str("A named instruction, e.g. Zoom out (your prompt is added to it)"),
        count=locale_str("How many variations, each its own seed and charged on its own"),
        upscale=locale_str("Make the image this many times larger instead (no prompt needed)"),
        **{f"image{n}": f"Reference image {n} (the prompt can name it)" for n in EXTRA_IMAGES},
    )
    @app_commands.choices(aspect_ratio=RATIO_CHOICES, format=FORMAT_CHOICES)
    @app_commands.choices(resolution=RES_CHOICES, count=COUNT_CHOICES)
    async def kontext(
        self,
        interaction: discord.Interaction[Any],
        prompt: app_commands.Range[str, 1, 2000] | None = None,
        image: discord.Attachment | None = None,
        aspect_ratio: app_commands.Choice[str] | None = None,
        seed: app_commands.Range[int, 0, SEED_MAX] | None = None,
        format: app_commands.Choice[str] | None = None,
        upsample: bool = False,
        model: str | None = None,
        resolution: app_commands.Choice[int] | None = None,
        preset: str | None = None,
        count: app_commands.Choice[int] | None = None,
        image2: discord.Attachment | None = None,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        image6: discord.Attachment | None = None,
        image7: discord.Attachment | None = None,
        image8: discord.Attachment | None = None,
        image9: discord.Attachment | None = None,
        image10: discord.Attachment | None = None,
        upscale: int | None = None,
    ) -> None:
        adapter = self.adapter
        given = (image, image2, image3, image4, image5, image6, image7, image8, image9, image10)
        outcome = await adapter.conversation.read_options(
            adapter.user_of(interaction),
            # Optional since ``upscale`` needs none; an edit without one is refused.
            prompt or "",
            # Every image given, in the order of the options (the first is edited).
            files=[attachments.source_of(a) for a in given if a is not None],
            context=adapter.context_of(interaction),
            aspect_ratio=aspect_ratio.value if aspect_ratio else None,
            seed=seed,
            output_format=format.value if format else None,
            upsample=upsample,
            model=model,
            resolution=resolution.value if resolution else None,
            preset=preset,
            count=count.value if count else None,
            upscale=upscale,
        )
        await adapter.answer_or_edit(interaction, outcome)

    @app_commands.command(
        name=locale_str("kontext-credits"), description=locale_str("Your credit balance")
    )
    async def credits(self, interaction: discord.Interaction[Any]) -> None:
        adapter = self.adapter
        text = await adapter.conversation.credits(
            adapter.user_of(interaction), adapter.context_of(interaction)
        )
        await interaction.response.send_message(text, ephemeral=True)

    # -- /kontext-history (issue 19) -------------------------------------------------------------

    @app_commands.command(
        name=locale_str("kontext-history"), description=locale_str("Your last 10 edits")
    )
    @app_commands.describe(user="Admins: someone else's edits")
    async def job_history(
        self, interaction: discord.Interaction[Any], user: discord.User | None = None
    ) -> None:
        adapter = self.adapter
        asker = adapter.user_of(interaction)
        whom = user_ref(interaction.guild_id, user.id) if user is not None else None
        answer = await adapter.conversation.history(
            asker, whom, adapter.platform_admin(interaction), buttons=True
        )
        # Ten lines with jump URLs outgrow a message's 2,000 characters (long_text).
        await interaction.response.send_message(
            **long_text(answer.text),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
            view=history_view(answer.buttons),
        )

    # ---------------------------------------------------------------------------------------------

    @app_commands.command(
        name=locale_str("kontext-help"), description=locale_str("How to use the Kontext bot")
    )
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message(self.adapter.conversation.help(), ephemeral=True)

    admin = app_commands.Group(
        name=locale_str("kontext-admin"),
        description=locale_str("Credits administration"),
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )

    @admin.command(
        name=locale_str("grant"),
        description=locale_str("Give (or with a negative amount, take) credits"),
    )
    @app_commands.describe(user="Who gets them", amount="Credits; negative to take away")
    async def grant(
        self,
        interaction: discord.Interaction[Any],
        user: discord.User,
        amount: app_commands.Range[int, -1_000_000, 1_000_000],
    ) -> None:
        adapter = self.adapter
        text = await adapter.conversation.grant(
            adapter.user_of(interaction),
            user_ref(interaction.guild_id, user.id),
            amount,
            adapter.platform_admin(interaction),
        )
        await interaction.response.send_message(text, ephemeral=True)

    # "ledger", as on Slack: "history" is everyone's own list of edits (/kontext-history).
    @admin.command(
        name=locale_str("ledger"), description=locale_str("A user's recent credit entries")
    )
    async def ledger(self, interaction: discord.Interaction[Any], user: discord.User) -> None:
        adapter = self.adapter
        text = await adapter.conversation.ledger(
            adapter.user_of(interaction),
            user_ref(interaction.guild_id, user.id),
            adapter.platform_admin(interaction),
        )
        await interaction.response.send_message(text[:2000], ephemeral=True)

    @admin.command(
        name=locale_str("top"), description=locale_str("Who spent the most credits this period")
    )
    async def top(self, interaction: discord.Interaction[Any]) -> None:
        adapter = self.adapter
        text = await adapter.conversation.top(
            adapter.user_of(interaction), adapter.platform_admin(interaction)
        )
        await interaction.response.send_message(text, ephemeral=True)

    @admin.command(
        name=locale_str("allowance"),
        description=locale_str("Set the allowance of the server, a role, a channel or a user"),
    )
    @app_commands.describe(
        amount=locale_str("Credits per period"),
        period=locale_str("How often it is granted (default: the bot's period)"),
        role=locale_str("Only members with this role (the most generous allowance applies)"),
        channel=locale_str("Only requests in this channel"),
        user=locale_str("Only this user (overrides everything else for them)"),
        remove=locale_str("Remove the override instead of setting it"),
    )
    @app_commands.choices(period=PERIOD_CHOICES)
    async def allowance(
        self,
        interaction: discord.Interaction[Any],
        amount: app_commands.Range[int, 0, 100_000_000] = 0,
        period: app_commands.Choice[str] | None = None,
        role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        user: discord.User | None = None,
        remove: bool = False,
    ) -> None:
        adapter = self.adapter
        text = await adapter.conversation.allowance(
            adapter.user_of(interaction),
            self._scope(interaction, role=role, channel=channel, user=user),
            None if remove else amount,
            period.value if period else None,
            adapter.platform_admin(interaction),
        )
        await interaction.response.send_message(text, ephemeral=True)

    @admin.command(
        name=locale_str("models"),
        description=locale_str("Allow restricted models for a role, a channel or a user"),
    )
    @app_commands.describe(
        names=locale_str("Model names separated by spaces (e.g. max), or off for none"),
        role=locale_str("Members with this role"),
        channel=locale_str("Requests in this channel"),
        user=locale_str("This user"),
    )
    async def models(
        self,
        interaction: discord.Interaction[Any],
        names: app_commands.Range[str, 1, 200],
        role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        user: discord.User | None = None,
    ) -> None:
        adapter = self.adapter
        text = await adapter.conversation.allow_models(
            adapter.user_of(interaction),
            self._scope(interaction, role=role, channel=channel, user=user),
            names.replace(",", " ").split(),
            adapter.platform_admin(interaction),
        )
        await interaction.response.send_message(text, ephemeral=True)

    @admin.command(
        name=locale_str("pause"),
        description=locale_str("Stop taking new edits in the server or a channel"),
    )
    async def pause(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel | None = None
    ) -> None:
        await self._pause(interaction, channel, paused=True)

    @admin.command(name=locale_str("resume"), description=locale_str("Take new edits again"))
    async def resume(
        self, interaction: discord.Interaction[Any], channel: discord.TextChannel | None = None
    ) -> None:
        await self._pause(interaction, channel, paused=False)

    @admin.command(
        name=locale_str("language"),
        description=locale_str("The language I answer in on this server (auto: each person's own)"),
    )
    @app_commands.describe(language=locale_str("A language, or auto"))
    @app_commands.choices(language=LANGUAGE_CHOICES)
    async def language(
        self, interaction: discord.Interaction[Any], language: app_commands.Choice[str]
    ) -> None:
        adapter = self.adapter
        text = await adapter.conversation.language(
            adapter.user_of(interaction), language.value, adapter.platform_admin(interaction)
        )
        await interaction.response.send_message(text, ephemeral=True)

    async def _pause(
        self,
        interaction: discord.Interaction[Any],
        channel: discord.TextChannel | None,
        *,
        paused: bool,
    ) -> None:
        adapter = self.adapter
        text = await adapter.conversation.pause(
            adapter.user_of(interaction),
            self._scope(interaction, channel=channel),
            paused,
            adapter.platform_admin(interaction),
        )
        await interaction.response.send_message(text, ephemeral=True)

    def _scope(
        self,
        interaction: discord.Interaction[Any],
        *,
        role: discord.Role | None = None,
        channel: discord.TextChannel | None = None,
        user: discord.User | None = None,
    ) -> str:
        space = f"discord:{interaction.guild_id}"
        if user is not None:
            return f"user:{space}:{user.id}"
        if role is not None:
            return f"role:{space}:{role.id}"
        if channel is not None:
            return f"channel:{space}:{channel.id}"
        return f"workspace:{space}"

    async def edit_message_image(
        self, interaction: discord.Interaction[Any], message: discord.Message
    ) -> None:
        inputs = self.adapter.conversation.inputs_of_message(attachments.sources_of(message))
        if isinstance(inputs, Said):
            await interaction.response.send_message(inputs.text, ephemeral=True)
            return
        await interaction.response.send_modal(
            self.adapter.prompt_modal(_("Edit with Kontext"), inputs)
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.edit_from_message(message)
