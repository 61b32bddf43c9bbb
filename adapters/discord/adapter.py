"""The Discord adapter: turns interactions and art-channel messages into core requests.

Every interaction is answered within Discord's 3 seconds: mistakes and refusals
ephemerally as the first response (nothing is stored or charged), an accepted edit with
a deferred "thinking" response that then becomes the status message and finally the
result (respond.py explains the order). The job's reply target keeps the interaction's
webhook token, so the result reaches the same message after a restart; a job that
outlives the 15-minute token is posted in the channel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import discord
import structlog
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from adapters.discord import attachments
from adapters.discord.cog import KontextCog
from adapters.discord.commands_sync import sync_if_changed
from adapters.discord.components import DYNAMIC_ITEMS, MAX_CHOICES, STATUS_ITEMS, PromptModal
from adapters.discord.pacing import ChannelSlots
from adapters.discord.people import PLATFORM, request_context, user_ref
from adapters.discord.reply import DiscordReply
from adapters.discord.respond import Acks, answer_interaction, answer_message
from adapters.discord.results import ResultButtons
from adapters.discord.style import DiscordStyle, long_text
from adapters.discord.translator import CatalogTranslator
from adapters.discord.welcome import Welcomed, welcome
from bot.chat.commands import starts_with_trigger
from bot.chat.conversation import Conversation, Edit, Said
from bot.config import DiscordConfig
from bot.domain import (
    Attachment,
    AttachmentSource,
    EditOptions,
    EditRequest,
    Job,
    RequestContext,
    UserRef,
)
from bot.errors import ConfigError
from bot.jobs.service import KontextService

log = structlog.get_logger("kontext.discord")
_START_TIMEOUT = 60.0
# Discord's limit for the first answer to an interaction (receiving-and-responding).
INITIAL_RESPONSE_SECONDS = 3.0
# Gateway close codes about sharding (https://discord.com/developers/docs/topics/
# opcodes-and-status-codes#gateway-gateway-close-event-codes), in the operator's words.
_SHARD_CLOSES = {
    4010: (
        "Discord refused the shard (close code 4010 Invalid shard): check discord.shard_ids "
        "and discord.shard_count"
    ),
    4011: (
        "Discord requires sharding for this many servers (close code 4011 Sharding "
        "required): set discord.shard_count to 0 (automatic) or raise it; see docs/discord.md"
    ),
}


def _locale(locale: discord.Locale | None) -> str | None:
    return locale.value if locale is not None else None


class SpeakingTree(app_commands.CommandTree["KontextBot"]):
    """Every app command answers in its user's language: the language is decided
    (``DiscordAdapter.speak_to``) in the command's own task before it runs, so every text
    the command builds is in it. discord.py awaits this check right before the command."""

    async def interaction_check(self, interaction: discord.Interaction[KontextBot], /) -> bool:
        await self.client.kontext.speak_to(interaction)
        return True


class KontextBot(commands.AutoShardedBot):
    """discord.py's bot with the adapter on it (``client.kontext``) for the buttons."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            tree_cls=SpeakingTree,
            **options,
        )
        self.kontext = adapter

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*DYNAMIC_ITEMS, *STATUS_ITEMS)
        # Before the commands are synced: their names and descriptions in every language
        # the bot has (translator.py).
        await self.tree.set_translator(CatalogTranslator())
        await self.add_cog(KontextCog(self.kontext, self.tree, self.kontext.service.models))
        config = self.kontext.config
        if config.syncs_commands:
            await sync_if_changed(self.tree, config.guild_ids, self.kontext.data_dir)
        else:
            log.info(
                "not syncing commands: the process running shard 0 does",
                shard_ids=config.shard_ids,
            )

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: art-channel messages are the cog's listener's."""

    async def on_guild_join(self, guild: discord.Guild, /) -> None:
        """Added to a server: greet it once (``discord.welcome``; adapters.discord.welcome)."""
        adapter = self.kontext
        if adapter.config.welcome:
            # In the server's language (its admins may have set one; else its Community
            # language, ``preferred_locale``).
            await adapter.conversation.speak(
                user_ref(guild.id, 0), getattr(guild.preferred_locale, "value", None)
            )
            await welcome(guild, adapter.conversation.welcome(), Welcomed(adapter.data_dir))


class DiscordAdapter:
    platform = PLATFORM

    def __init__(
        self,
        config: DiscordConfig,
        service: KontextService,
        *,
        data_dir: Path,
        guild_ready_timeout: float = 2.0,
        reservation_budget: float = 2.0,
    ) -> None:
        self.config = config
        self.service = service
        self.conversation = Conversation(service, DiscordStyle())
        self.data_dir = data_dir
        # discord.py builds every REST URL (webhooks included) from this one class
        # attribute; the gateway URL then comes from GET /gateway/bot.
        discord.http.Route.BASE = config.api_base_url
        intents = discord.Intents.default()
        # Privileged: only asked for when art channels need to read plain messages.
        intents.message_content = bool(config.channels)
        self.bot = KontextBot(
            self,
            intents=intents,
            # None: discord.py asks GET /gateway/bot for Discord's recommended count and
            # runs every shard; else this process runs shard_ids (all when empty) of it.
            shard_count=config.shard_count or None,
            shard_ids=config.shard_ids or None,
            guild_ready_timeout=guild_ready_timeout,
            # Nobody is pinged unless a message names whom it may ping (the requester):
            # a prompt echoed back with @everyone or <@someone> stays text.
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.last_edits: dict[str, float] = {}
        self.slots = ChannelSlots(config.max_concurrent_edits_per_channel)
        self.acks = Acks()
        # How long the reservation may take before the interaction is deferred
        # (privately) to keep Discord's 3 seconds; tests shorten it.
        self.reservation_budget = reservation_budget
        self._task: asyncio.Task[None] | None = None
        # What the result's buttons do (components.py finds it on the client).
        self.buttons = ResultButtons(self)

    # -- the Frontend side ----------------------------------------------------------------------

    def reply_for(self, job: Job) -> DiscordReply:
        ack = self.acks.get(job.request_key)
        # Received by another process (several processes or shards share the queue): its
        # answer to Discord may still be in flight for up to Discord's 3 seconds.
        answered_by = (
            job.created_at + INITIAL_RESPONSE_SECONDS
            if ack is None and job.reply_target.get("kind") == "interaction"
            else None
        )
        return self._reply(job.reply_target, ack=ack, answered_by=answered_by)

    def _reply(
        self,
        target: Mapping[str, Any],
        ack: asyncio.Future[dict[str, Any]] | None = None,
        answered_by: float | None = None,
    ) -> DiscordReply:
        if len(self.last_edits) > 10_000:  # a bound, not a cache policy: old entries are stale
            self.last_edits.clear()
        return DiscordReply(
            self.bot,
            target,
            interval=self.config.progress_interval_seconds,
            last_edits=self.last_edits,
            ack=ack,
            answered_by=answered_by,
            slots=self.slots,
            layout=self.conversation.result_layout(),
        )

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            return await attachments.fetch(self.bot, source, max_bytes)

        return Attachment(source=source, fetch=fetch)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.channels:
            log.info(
                "art channels configured: asking Discord for the privileged Message Content "
                "intent (enable it under Bot > Privileged Gateway Intents)",
                channels=len(self.config.channels),
            )
        await self.bot.login(self.config.token.get_secret_value())
        if self.config.shard_count:
            await self._use_bots_gateway()
        self._task = asyncio.create_task(self.bot.connect(reconnect=True))
        ready = asyncio.create_task(self.bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {self._task, ready}, timeout=_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if self._task in done:
            ready.cancel()
            error = self._task.exception()
            if isinstance(error, discord.PrivilegedIntentsRequired):
                raise ConfigError(
                    "discord.channels needs the Message Content intent: enable it in the "
                    "Discord Developer Portal (Bot > Privileged Gateway Intents), or empty "
                    "discord.channels"
                )
            if isinstance(error, discord.ConnectionClosed) and error.code in _SHARD_CLOSES:
                raise ConfigError(_SHARD_CLOSES[error.code])
            raise ConfigError(f"discord: the gateway connection ended: {error!r}")
        if ready not in done:
            ready.cancel()
            log.warning("discord gateway not ready yet; going on", timeout=_START_TIMEOUT)
        log.info(
            "discord adapter connected",
            user=str(self.bot.user),
            shard_count=self.bot.shard_count,
            shard_ids=self.config.shard_ids or "all",
        )

    async def _use_bots_gateway(self) -> None:
        """With a fixed shard count discord.py skips GET /gateway/bot and dials its
        built-in ``wss://gateway.discord.gg``; ask for the address as Discord documents
        (and as a proxy or the tests' fake in ``api_base_url`` answers) instead."""
        _, url, _ = await self.bot.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)

    async def stop(self) -> None:
        await self.bot.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def ready(self) -> bool:
        return self.bot.is_ready() and not self.bot.is_closed()

    # -- requests from interactions -------------------------------------------------------------

    def user_of(self, interaction: discord.Interaction[Any]) -> UserRef:
        return user_ref(interaction.guild_id, interaction.user.id)

    async def speak_to(self, interaction: discord.Interaction[Any]) -> None:
        """Answer this interaction in its user's language: the core decides from the
        user's client language (``locale``), then the server's (``guild_locale``)."""
        await self.conversation.speak(
            self.user_of(interaction),
            _locale(interaction.locale),
            _locale(interaction.guild_locale),
        )

    def context_of(self, interaction: discord.Interaction[Any]) -> RequestContext:
        return request_context(interaction.channel_id, interaction.user)

    def is_platform_admin(self, interaction: discord.Interaction[Any]) -> bool:
        return bool(interaction.permissions.manage_guild)

    async def edit_from_interaction(
        self,
        interaction: discord.Interaction[Any],
        *,
        prompt: str,
        options: EditOptions,
        sources: Sequence[AttachmentSource],
    ) -> None:
        """Check, reserve, then answer: a refusal privately as the first response, an
        accepted edit with a public deferral that becomes its status message (see
        respond.py for why in this order)."""
        user = self.user_of(interaction)
        request = EditRequest(
            user=user,
            prompt=prompt,
            options=options,
            attachments=tuple(self.attachment_for(s) for s in sources),
            reply_target={},
            idempotency_key=f"discord:{user.workspace}:interaction:{interaction.id}",
            context=self.context_of(interaction),
        )
        refused = self.conversation.check(request)
        if refused is not None:
            await interaction.response.send_message(refused.text, ephemeral=True)
            return
        await answer_interaction(
            interaction,
            request,
            conversation=self.conversation,
            acks=self.acks,
            reply=self._reply,
            budget=self.reservation_budget,
        )

    async def edit_from_text(
        self,
        interaction: discord.Interaction[Any],
        text: str,
        sources: Sequence[AttachmentSource],
        model: str | None = None,
    ) -> None:
        """A modal's prompt, in the text grammar so that ``--ar 16:9`` works there too;
        ``model``: the modal's model select (a ``--model`` in the text wins)."""
        outcome = await self.conversation.read(
            self.user_of(interaction),
            text,
            files=sources,
            context=self.context_of(interaction),
            platform_admin=self.platform_admin(interaction),
            model=model,
        )
        await self.answer_or_edit(interaction, outcome)

    async def answer_or_edit(
        self, interaction: discord.Interaction[Any], outcome: Said | Edit
    ) -> None:
        """What the conversation layer made of an interaction: an answer, privately, or
        an edit to check, reserve and queue."""
        if isinstance(outcome, Said):
            await interaction.response.send_message(**long_text(outcome.text), ephemeral=True)
            return
        await self.edit_from_interaction(
            interaction, prompt=outcome.prompt, options=outcome.options, sources=outcome.inputs
        )

    def platform_admin(
        self, interaction: discord.Interaction[Any]
    ) -> Callable[[], Awaitable[bool]]:
        async def ask() -> bool:
            return self.is_platform_admin(interaction)

        return ask

    def prompt_modal(
        self, title: str, sources: Sequence[AttachmentSource], *, model: str | None = None
    ) -> PromptModal:
        async def submitted(
            interaction: discord.Interaction[Any], text: str, chosen: str | None
        ) -> None:
            await self.edit_from_text(interaction, text, sources, chosen)

        preset = model or self.service.models.default.name
        models = self.service.models.choices(MAX_CHOICES)
        return PromptModal(title, submitted, models=models, model=preset)

    # -- art channels ----------------------------------------------------------------------------

    def addresses_bot(self, message: discord.Message) -> bool:
        me = self.bot.user
        if message.author.bot or me is None:
            return False
        channel = message.channel
        channels = set(self.config.channels)
        if channel.id not in channels and getattr(channel, "parent_id", None) not in channels:
            return False
        return me in message.mentions or starts_with_trigger(message.content)

    async def edit_from_message(self, message: discord.Message) -> None:
        """``!kontext make it blue`` with an image, or in reply to a message with one
        (the bot's own result included: that is how a chain of edits goes on)."""
        if not self.addresses_bot(message):
            return
        user = user_ref(message.guild.id if message.guild else None, message.author.id)
        # A message carries no client language: the server's, else the default.
        await self.conversation.speak(
            user, _locale(message.guild.preferred_locale) if message.guild else None
        )
        key = f"discord:{user.workspace}:msg:{message.id}"
        if await self.service.job_for_key(key) is not None:
            return  # a gateway replay of a message already taken
        me = self.bot.user
        own = attachments.sources_of(message)
        look = not own or self.conversation.takes_several()
        replied = await attachments.referenced_message(message) if look else None
        files = self.conversation.message_files(
            own,
            attachments.first_image(replied) if replied is not None else None,
            replied_is_result=replied is not None and me is not None and replied.author.id == me.id,
        )
        context = request_context(message.channel.id, message.author)
        outcome = await self.conversation.read(
            user,
            message.content,
            files=files,
            context=context,
            bot_mentions=[f"<@{me.id}>", f"<@!{me.id}>"] if me else [],
        )
        if isinstance(outcome, Said):
            # Not ephemeral (messages cannot be): a mistake is tidied away after a minute.
            if outcome.mistake:
                await message.reply(
                    **long_text(outcome.text), mention_author=False, delete_after=60
                )
            else:
                await message.reply(**long_text(outcome.text), mention_author=False)
            return
        request = EditRequest(
            user=user,
            prompt=outcome.prompt,
            options=outcome.options,
            attachments=tuple(self.attachment_for(s) for s in outcome.inputs),
            reply_target={},
            idempotency_key=key,
            context=context,
            left_out=outcome.left_out,
        )
        refused = self.conversation.check(request)
        if refused is not None:
            await message.reply(refused.text, mention_author=False, delete_after=60)
            return
        target = {
            "kind": "channel",
            "channel": str(message.channel.id),
            "reply_to": str(message.id),
            "user": str(message.author.id),
            "upload_limit": message.guild.filesize_limit if message.guild else None,
        }
        await answer_message(
            message, request, target, conversation=self.conversation, acks=self.acks
        )
