"""The Slack adapter: bolt listeners that turn Slack events into core requests.

Every listener acknowledges Slack first (Slack wants an answer within 3 seconds) and
does the rest after. Each request's idempotency key comes from Slack's own ids (the
modal's view id, the message's channel and ts), so a redelivered event, or the
``message`` and ``app_mention`` events Slack sends for one message, make one job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import httpx
import structlog
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.admin import SlackAdmin
from adapters.slack.files import SlackFileFetcher
from adapters.slack.reply import SlackReply
from adapters.slack.views import (
    CALLBACK_ID,
    SHORTCUT_CALLBACK_ID,
    edit_modal,
    read_submission,
)
from bot.commands import (
    HELP_TEXT,
    CreditsCommand,
    HelpCommand,
    build_options,
    parse_command,
    validate_prompt,
)
from bot.config import SlackConfig
from bot.domain import (
    Attachment,
    AttachmentSource,
    EditOptions,
    EditRequest,
    Job,
    RequestContext,
    UserRef,
)
from bot.errors import KontextError, UserInputError
from bot.service import CreditStatus, KontextService

log = structlog.get_logger("kontext.slack")
PLATFORM = "slack"
_IMAGE_TYPES = ("image/",)


def credits_text(status: CreditStatus) -> str:
    refill = (
        f"<!date^{int(status.next_allowance_at.timestamp())}^{{date_short_pretty}} at {{time}}|"
        f"{status.next_allowance_at:%Y-%m-%d %H:%M} UTC>"
        if status.next_allowance_at
        else "never (one-time allowance)"
    )
    running = f", {status.active_jobs} running" if status.active_jobs else ""
    return (
        f"You have *{status.balance} credits*: {status.images_left} images at "
        f"{status.cost_per_image} each{running}. Next allowance of {status.allowance}: {refill}."
    )


class SlackAdapter:
    platform = PLATFORM

    def __init__(self, config: SlackConfig, service: KontextService) -> None:
        self.config = config
        self.service = service
        token = config.bot_token.get_secret_value()
        self.client = AsyncWebClient(
            token=token,
            base_url=config.api_base_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(),
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),
            ],
        )
        self.app = AsyncApp(
            client=self.client,
            signing_secret=config.signing_secret.get_secret_value() or None,
            # Answer Slack at once; the listeners go on after their ack().
            process_before_response=False,
        )
        self.http = httpx.AsyncClient(timeout=30.0, follow_redirects=False)
        self.files = SlackFileFetcher(self.http, token, config.file_hosts)
        self.admin = SlackAdmin(service, self.client)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._register()

    # -- the Frontend side (the core finishing jobs) -------------------------------------

    def reply_for(self, job: Job) -> SlackReply:
        return SlackReply(self.client, job.reply_target)

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            return await self.files.fetch(source.locator, max_bytes)

        return Attachment(source=source, fetch=fetch)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        # One aiohttp session for every Web API call (bolt's per-request clients share
        # it too): without one, slack_sdk opens and closes a session, so a TCP and TLS
        # connection, for each call, and a job makes about eight calls.
        self.client.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.client.timeout)
        )
        # Fail fast with Slack's own reason (invalid_auth, ...) instead of retrying a
        # connection that can never work.
        await self.client.auth_test()
        if self.config.mode == "socket":
            await self.client.apps_connections_open(
                app_token=self.config.app_token.get_secret_value()
            )
        if self.config.mode == "http":
            self._runner = web.AppRunner(self.app.web_app(path="/slack/events"), access_log=None)
            await self._runner.setup()
            # Slack delivers bursts (a channel's worth of mentions at once); the default
            # listen backlog of 128 resets connections beyond it.
            site = web.TCPSite(
                self._runner, self.config.http_host, self.config.http_port, backlog=1024
            )
            await site.start()
            self.port = int(self._runner.addresses[0][1])
            log.info("slack adapter listening", mode="http", port=self.port)
        else:
            self._socket = AsyncSocketModeHandler(
                self.app, self.config.app_token.get_secret_value()
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
            log.info("slack adapter connected", mode="socket")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        await self.http.aclose()
        if self.client.session is not None:
            await self.client.session.close()

    async def ready(self) -> bool:
        if self._socket is not None:
            return bool(await self._socket.client.is_connected())
        return self._runner is not None

    # -- listeners ---------------------------------------------------------------------------

    def _register(self) -> None:
        self.app.command("/kontext")(self._on_command)
        self.app.view(CALLBACK_ID)(self._on_view_submission)
        self.app.shortcut(SHORTCUT_CALLBACK_ID)(self._on_message_shortcut)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)

    async def _on_command(
        self, ack: Callable[..., Awaitable[None]], command: dict[str, Any]
    ) -> None:
        user = UserRef(PLATFORM, command["team_id"], command["user_id"])
        text = str(command.get("text") or "")
        caps = self.service.capabilities
        answer = await self.admin.answer(text, user)
        if answer is not None:
            await ack(text=answer)
            return
        try:
            parsed = (
                parse_command(text, has_image=True, capabilities=caps) if text.strip() else None
            )
            if isinstance(parsed, HelpCommand):
                await ack(text=f"{HELP_TEXT}\n\nEach image costs {caps.cost_per_image} credits.")
                return
            if isinstance(parsed, CreditsCommand):
                here = RequestContext(channel=command["channel_id"])
                await ack(text=credits_text(await self.service.credits(user, here)))
                return
        except UserInputError as exc:
            await ack(text=exc.user_message)
            return
        await ack()
        metadata = {"channel": command["channel_id"], "user": user.user, "team": user.workspace}
        await self._open_modal(
            command["trigger_id"],
            metadata,
            prompt=parsed.prompt if parsed else "",
            options=parsed.options if parsed else EditOptions(),
            with_file_input=True,
        )

    async def _open_modal(
        self,
        trigger_id: str,
        metadata: dict[str, Any],
        *,
        prompt: str,
        options: EditOptions,
        with_file_input: bool,
    ) -> None:
        view = edit_modal(
            metadata=metadata,
            prompt=prompt,
            options=options,
            with_file_input=with_file_input,
            aspect_ratios=self.service.capabilities.aspect_ratios,
        )
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open failed", error=exc.response.get("error"))

    async def _on_view_submission(
        self,
        ack: Callable[..., Awaitable[None]],
        body: dict[str, Any],
        view: dict[str, Any],
    ) -> None:
        submission = read_submission(view)
        metadata = submission.metadata
        file_ids = submission.file_ids or tuple(metadata.get("files", ()))
        caps = self.service.capabilities
        try:
            prompt = validate_prompt(submission.prompt, caps)
            options = build_options(
                has_image=bool(file_ids),
                capabilities=caps,
                aspect_ratio=submission.aspect_ratio,
                seed=submission.seed,
                output_format=submission.output_format,
            )
        except UserInputError as exc:
            # Shown under the prompt field: the modal stays open to be corrected.
            await ack(response_action="errors", errors={"prompt": exc.user_message})
            return
        await ack()
        team = str(metadata.get("team") or body["team"]["id"])
        target = {
            "channel": str(metadata.get("channel")),
            "user": body["user"]["id"],
            "thread_ts": metadata.get("thread_ts"),
        }
        await self._submit(
            UserRef(PLATFORM, team, body["user"]["id"]),
            prompt,
            options,
            file_ids,
            target,
            idempotency_key=f"slack:{team}:view:{view['id']}",
        )

    async def _on_message_shortcut(
        self, ack: Callable[..., Awaitable[None]], shortcut: dict[str, Any]
    ) -> None:
        await ack()
        message = shortcut.get("message") or {}
        channel = shortcut["channel"]["id"]
        user_id = shortcut["user"]["id"]
        images = [f["id"] for f in message.get("files") or [] if _is_image(f)]
        if not images:
            await SlackReply(self.client, {"channel": channel, "user": user_id}).ephemeral(
                "That message has no image to edit."
            )
            return
        metadata = {
            "channel": channel,
            "user": user_id,
            "team": shortcut["team"]["id"],
            "thread_ts": message.get("thread_ts") or message.get("ts"),
            "files": images[:1],
        }
        await self._open_modal(
            shortcut["trigger_id"],
            metadata,
            prompt="",
            options=EditOptions(),
            with_file_input=False,
        )

    async def _on_mention(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        await self._from_message(event, context)

    async def _on_message(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        bot_user = context.get("bot_user_id")
        if event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            return
        if bot_user and f"<@{bot_user}>" in str(event.get("text") or ""):
            await self._from_message(event, context)

    async def _from_message(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        """A message addressed to the bot: its image, or the latest image of its thread."""
        if event.get("bot_id"):
            return
        team = str(context.get("team_id") or event.get("team") or "")
        channel = str(event["channel"])
        ts = str(event["ts"])
        thread_ts = event.get("thread_ts")
        user = UserRef(PLATFORM, team, str(event["user"]))
        target = {"channel": channel, "user": user.user, "thread_ts": thread_ts or ts}
        reply = SlackReply(self.client, target)
        bot_user = context.get("bot_user_id")
        mentions = [f"<@{bot_user}>"] if bot_user else []
        file_ids = [str(f["id"]) for f in event.get("files") or [] if _is_image(f)]
        try:
            if not file_ids and thread_ts:
                file_ids = await self._latest_thread_image(channel, str(thread_ts), ts)
            parsed = parse_command(
                str(event.get("text") or ""),
                has_image=bool(file_ids),
                capabilities=self.service.capabilities,
                bot_mentions=mentions,
            )
        except UserInputError as exc:
            await reply.ephemeral(exc.user_message)
            return
        if isinstance(parsed, HelpCommand):
            await reply.ephemeral(HELP_TEXT)
            return
        if isinstance(parsed, CreditsCommand):
            status = await self.service.credits(user, RequestContext(channel=channel))
            await reply.ephemeral(credits_text(status))
            return
        await self._submit(
            user,
            parsed.prompt,
            parsed.options,
            tuple(file_ids[:1]),
            target,
            idempotency_key=f"slack:{team}:msg:{channel}:{ts}",
        )

    async def _latest_thread_image(self, channel: str, thread_ts: str, before: str) -> list[str]:
        """Multi-turn editing: "now make her wave" in a thread edits its latest image."""
        answer = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
        messages: Sequence[dict[str, Any]] = answer.get("messages") or []
        for message in reversed(messages):
            if float(message.get("ts", 0)) > float(before):
                continue
            images = [f["id"] for f in message.get("files") or [] if _is_image(f)]
            if images:
                return [str(images[-1])]
        return []

    async def _submit(
        self,
        user: UserRef,
        prompt: str,
        options: EditOptions,
        file_ids: Sequence[str],
        target: dict[str, Any],
        *,
        idempotency_key: str,
    ) -> None:
        reply = SlackReply(self.client, target)
        if await self.service.job_for_key(idempotency_key) is not None:
            return  # Slack redelivered the event, or sent message and app_mention both
        try:
            attachments = [await self._attachment(file_id) for file_id in file_ids]
            ack = await self.service.submit(
                EditRequest(
                    user=user,
                    prompt=prompt,
                    options=options,
                    attachments=tuple(attachments),
                    reply_target=target,
                    idempotency_key=idempotency_key,
                    context=RequestContext(channel=str(target["channel"])),
                )
            )
        except KontextError as exc:
            await reply.ephemeral(exc.user_message)
            return
        if ack.duplicate:
            return
        await reply.ephemeral(
            f"Queued (position {ack.queue_position}): {ack.job.cost} credits reserved, "
            f"{ack.balance_after} left."
        )

    async def _attachment(self, file_id: str) -> Attachment:
        try:
            info = await self.client.files_info(file=file_id)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in ("missing_scope", "not_allowed_token_type"):
                raise UserInputError(
                    "I can't read files in this workspace: the bot's Slack token lacks the "
                    "files:read scope. Ask an admin to add it and reinstall the app."
                ) from None
            raise UserInputError("I couldn't find that file (it may have been deleted).") from None
        file = info["file"]
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            raise UserInputError("Slack did not give me a way to download that file.")
        source = AttachmentSource(
            name=str(file.get("name") or file_id),
            content_type=file.get("mimetype"),
            size=file.get("size"),
            locator=str(url),
        )
        return self.attachment_for(source)


def _is_image(file: dict[str, Any]) -> bool:
    return str(file.get("mimetype") or "").startswith(_IMAGE_TYPES)
