"""Slack events in, the conversation layer's answers out.

The app runs with ``process_before_response``: Slack gets its 200 only after the
listener has stored and reserved the job, so an acknowledged request is durable (a
process killed before that point is retried by Slack, which resends events it got no
200 for). Everything a listener does before that is quick: what the event itself
carries (file ids, names, declared types and sizes), a thread look-up for multi-turn
edits, one transaction. Downloading, and looking up a file Slack did not describe,
happen in the runner.

A slash command or a message shortcut also works in a channel the bot is not in, where
it could not post the result: before anything is reserved the listener asks whether the
bot is a member (``membership.py``) and, if not, tells the requester privately how to
invite it; nothing is charged. The slash command's or shortcut's ``response_url``
travels with the request (modal metadata, then the job's reply target), so a bot
removed before delivery can still tell the requester privately (``reply.py``).

Each request's idempotency key comes from Slack's own ids (the modal's view id, the
message's channel and ts), so a redelivered event, or the ``message`` and
``app_mention`` events Slack sends for one message, make one job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.home import DASHBOARD_ACTION_ID, home_view
from adapters.slack.locales import Locales
from adapters.slack.membership import Membership
from adapters.slack.reply import ACKNOWLEDGED, SlackReply, job_metadata, status_about
from adapters.slack.status import StatusBoard
from adapters.slack.views import (
    AGAIN_ACTION_ID,
    CHANNEL_BLOCK,
    DELETE_ACTION_ID,
    EDIT_AGAIN_ACTION_ID,
    MAX_SELECT_OPTIONS,
    MORE_ACTION_ID,
    NEW_EDIT_ACTION_ID,
    PRESET_ACTION_PREFIX,
    REROLL_ACTION_ID,
    RESULT_BLOCK_PREFIX,
    RESULT_REROLL_ACTION_ID,
    UPSCALE_ACTION_ID,
    cancel_blocks,
    edit_modal,
    notice_modal,
    read_submission,
)
from bot.chat import texts
from bot.chat.conversation import Conversation, Edit, Said
from bot.chat.texts import upscaled_about
from bot.config import SlackConfig
from bot.domain import (
    Attachment,
    AttachmentSource,
    EditOptions,
    EditRequest,
    RequestContext,
    UserRef,
)
from bot.i18n import _

log = structlog.get_logger("kontext.slack")
PLATFORM = "slack"
Ack = Callable[..., Awaitable[None]]
Respond = Callable[..., Awaitable[Any]]  # slack_bolt's respond (the response_url)
# Slack caps private_metadata at 3,000 characters; a file's description fits many times.
_METADATA_FILES = 10  # every image of the message, as far as private_metadata holds


def source_of(file: dict[str, Any]) -> AttachmentSource:
    """A file as the event describes it. Without a download URL (Slack sends bare
    ``{"id": ..., "file_access": "check_file_info"}`` for some shares) the locator is
    the file id, looked up with files.info by the runner."""
    url = file.get("url_private_download") or file.get("url_private")
    return AttachmentSource(
        name=str(file.get("name") or file.get("title") or file["id"]),
        content_type=file.get("mimetype"),
        size=file.get("size"),
        locator=str(url) if url else f"file:{file['id']}",
    )


def _is_image(file: dict[str, Any]) -> bool:
    return str(file.get("mimetype") or "").startswith("image/")


def not_in_channel(bot_name: str) -> str:
    """Slack's own wording (its /invite command), so it lives here, not in bot/texts."""
    return (
        "I'm not in this channel, so I couldn't post the result here. Add me with "
        f"`/invite @{bot_name}` and try again. Nothing was charged."
    )


class SlackHost(Protocol):
    """What the listeners use of the adapter (``SlackAdapter`` is one). A Protocol, not
    the adapter's class, so this module does not import the adapter that imports it."""

    @property
    def client(self) -> AsyncWebClient: ...

    @property
    def app(self) -> AsyncApp: ...

    @property
    def membership(self) -> Membership: ...

    @property
    def locales(self) -> Locales: ...  # each user's locale (locales.py)

    @property
    def status(self) -> StatusBoard: ...  # the jobs' status lines (status.py)

    @property
    def config(self) -> SlackConfig: ...

    @property
    def bot_name(self) -> str: ...  # read at each use: known once the bot has connected

    def platform_admin(self, user: UserRef) -> Callable[[], Awaitable[bool]]: ...

    def api_error(self, method: str, exc: SlackApiError) -> None: ...

    def attachment_for(self, source: AttachmentSource) -> Attachment: ...


class SlackListeners:
    def __init__(self, adapter: SlackHost, conversation: Conversation) -> None:
        self.adapter = adapter
        self.client = adapter.client
        self.conversation = conversation

    async def _speak(self, user: UserRef) -> None:
        """Answer ``user`` in their language from here on in this listener: the core
        decides, from the locale Slack gives for them (looked up once and kept)."""
        await self.conversation.speak(user, await self.adapter.locales.of(user.user))

    def register(self) -> None:
        from adapters.slack.views import CALLBACK_ID, CANCEL_ACTION_ID, SHORTCUT_CALLBACK_ID

        app = self.adapter.app
        app.command("/kontext")(self.on_command)
        app.view(CALLBACK_ID)(self.on_view_submission)
        app.shortcut(SHORTCUT_CALLBACK_ID)(self.on_message_shortcut)
        app.action(CANCEL_ACTION_ID)(self.on_cancel)
        app.action(RESULT_REROLL_ACTION_ID)(self.on_result_action)
        app.action(AGAIN_ACTION_ID)(self.on_result_action)
        app.action(UPSCALE_ACTION_ID)(self.on_result_action)
        app.action(MORE_ACTION_ID)(self.on_result_action)
        app.action(DELETE_ACTION_ID)(self.on_delete_result)
        app.action(re.compile("^" + re.escape(PRESET_ACTION_PREFIX)))(self.on_result_action)
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_app_home_opened)
        app.action(NEW_EDIT_ACTION_ID)(self.on_new_edit)
        app.action(REROLL_ACTION_ID)(self.on_reroll)
        app.action(EDIT_AGAIN_ACTION_ID)(self.on_edit_again)
        app.action(DASHBOARD_ACTION_ID)(self.on_link)

    # -- the welcome (issue 29) ---------------------------------------------------------------

    async def on_app_home_opened(
        self, event: dict[str, Any], body: dict[str, Any] | None = None
    ) -> None:
        """Someone opened the bot's Home tab: it is published anew (``home.py``). Or they
        opened its Messages tab: while their DM with the bot is empty, the bot says what
        it does (the Discord welcome's words), so it is said once, whichever process
        gets the event, with nothing to remember (``slack.welcome``). Both are said in
        the opener's language, as every answer to them is."""
        team = str((body or {}).get("team_id") or event.get("team") or "")
        if event.get("tab") == "home":
            await self.publish_home(UserRef(PLATFORM, team, str(event["user"])))
            return
        channel = str(event.get("channel") or "")
        if not self.adapter.config.welcome or event.get("tab") != "messages" or not channel:
            return
        try:
            history = await self.client.conversations_history(channel=channel, limit=1)
            if history.get("messages"):
                return
            if event.get("user"):
                await self._speak(UserRef(PLATFORM, team, str(event["user"])))
            await self.client.chat_postMessage(channel=channel, text=self.conversation.welcome())
        except SlackApiError as exc:
            self.adapter.api_error("welcome", exc)

    # -- the Home tab (issue 28) ----------------------------------------------------------------

    async def publish_home(self, user: UserRef) -> None:
        """What the conversation says the person's home screen is, published (Slack keeps
        it until the next publish)."""
        await self._speak(user)
        screen = await self.conversation.home(user, self.adapter.platform_admin(user))
        try:
            await self.client.views_publish(user_id=user.user, view=home_view(screen))
        except SlackApiError as exc:
            self.adapter.api_error("views.publish", exc)

    def _home_user(self, body: dict[str, Any]) -> UserRef:
        team = (body.get("team") or {}).get("id") or body["user"].get("team_id")
        return UserRef(PLATFORM, str(team), str(body["user"]["id"]))

    async def _notice(self, trigger_id: str, text: str) -> None:
        """An answer to a Home tab button, which is in no channel: a small modal."""
        try:
            await self.client.views_open(trigger_id=trigger_id, view=notice_modal(text))
        except SlackApiError as exc:
            self.adapter.api_error("views.open", exc)

    async def on_new_edit(self, ack: Ack, body: dict[str, Any]) -> None:
        """The Home tab's New edit: the /kontext modal with a channel picker."""
        await ack()
        user = self._home_user(body)
        await self._speak(user)
        metadata = {"user": user.user, "team": user.workspace, "home": True}
        await self._open_modal(
            body["trigger_id"], metadata, with_file_input=True, channel_picker=True
        )

    async def _job_target(self, job_id: str) -> dict[str, Any] | None:
        """Where the result of ``job_id`` went: a new edit from it goes there too."""
        job = await self.conversation.service.job(job_id)
        if job is None or not job.reply_target.get("channel"):
            return None
        return {
            "channel": str(job.reply_target["channel"]),
            "thread_ts": job.reply_target.get("thread_ts"),
        }

    async def on_reroll(self, ack: Ack, body: dict[str, Any]) -> None:
        """Re-roll: the same edit with a new seed, posted where the first one was; the
        one who clicks pays (``Conversation.reroll``)."""
        await ack()
        user = self._home_user(body)
        await self._speak(user)
        action = (body.get("actions") or [{}])[0]
        job_id = str(action.get("value") or "")
        trigger = str(body.get("trigger_id") or "")
        edit = await self.conversation.reroll(job_id)
        where = await self._job_target(job_id)
        if isinstance(edit, Said) or where is None:
            await self._notice(
                trigger, edit.text if isinstance(edit, Said) else _(texts.REROLL_GONE)
            )
            return
        channel = where["channel"]
        if not await self._bot_is_in(channel):
            await self._notice(trigger, self._invite())
            return
        target = {**where, "user": user.user}
        key = f"slack:{user.workspace}:reroll:{user.user}:{job_id}:{action.get('action_ts')}"
        context = RequestContext(channel=channel)
        submitted = await self.conversation.submit(self._request(user, edit, target, key, context))
        if submitted.duplicate:
            return
        text = submitted.text
        if submitted.accepted:
            text += " " + texts.result_goes_to(self.conversation.style, channel)
        await self._notice(trigger, text)
        self.adapter.status.spawn(self.publish_home(user))

    async def on_edit_again(self, ack: Ack, body: dict[str, Any]) -> None:
        """Edit again: the result (where its delivery recorded it) is the next edit's
        input, in the modal without a file field; posted where the result was."""
        await ack()
        user = self._home_user(body)
        await self._speak(user)
        job_id = str((body.get("actions") or [{}])[0].get("value") or "")
        trigger = str(body.get("trigger_id") or "")
        nxt = await self.conversation.edit_again(job_id, None)
        where = await self._job_target(job_id)
        if isinstance(nxt, Said) or where is None:
            gone = nxt.text if isinstance(nxt, Said) else _(texts.RESULT_IMAGE_GONE)
            await self._notice(trigger, gone)
            return
        metadata = {
            **where,
            "user": user.user,
            "team": user.workspace,
            "home": True,
            "files": [s.to_json() for s in nxt.inputs[:_METADATA_FILES]],
        }
        await self._open_modal(
            trigger, metadata, options=EditOptions(model=nxt.model), with_file_input=False
        )

    async def on_link(self, ack: Ack) -> None:
        """A link button (the dashboard): Slack opens the link; the click is only acked."""
        await ack()

    # -- slash command and modal -----------------------------------------------------------

    async def on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        user = UserRef(PLATFORM, command["team_id"], command["user_id"])
        await self._speak(user)
        text = str(command.get("text") or "")
        channel = str(command["channel_id"])
        metadata = {
            "channel": channel,
            "user": user.user,
            "team": user.workspace,
            "response_url": command.get("response_url"),
        }
        if not text.strip():
            if not await self._bot_is_in(channel):
                await ack(text=self._invite())
                return
            await ack()
            await self._open_modal(command["trigger_id"], metadata, with_file_input=True)
            return
        outcome = await self.conversation.read(
            user,
            text,
            context=RequestContext(channel=command["channel_id"]),
            platform_admin=self.adapter.platform_admin(user),
            image_follows=True,
        )
        if isinstance(outcome, Said):
            await ack(text=outcome.text)
            return
        if not await self._bot_is_in(channel):
            await ack(text=self._invite())
            return
        await ack()
        prompt = outcome.prompt
        if outcome.options.upscale is not None:
            # ``/kontext --upscale 2``: the modal is for the image; the scale travels in
            # the metadata and the form's other fields are not read (issue 27).
            metadata["upscale"] = outcome.options.upscale
            prompt = prompt or upscaled_about(outcome.options.upscale)
        await self._open_modal(
            command["trigger_id"],
            metadata,
            prompt=prompt,
            options=outcome.options,
            with_file_input=True,
        )

    async def _open_modal(
        self,
        trigger_id: str,
        metadata: dict[str, Any],
        *,
        prompt: str = "",
        options: EditOptions | None = None,
        with_file_input: bool,
        channel_picker: bool = False,
    ) -> None:
        view = edit_modal(
            metadata=metadata,
            prompt=prompt,
            options=options or EditOptions(),
            with_file_input=with_file_input,
            aspect_ratios=self.conversation.service.capabilities.aspect_ratios,
            models=self.conversation.service.models.choices(MAX_SELECT_OPTIONS),
            default_model=self.conversation.service.models.default.name,
            max_files=self.conversation.service.models.max_images,
            presets=self.conversation.preset_choices(),
            max_count=self.conversation.service.max_variations,
            channel_label=_(texts.HOME_CHANNEL_LABEL) if channel_picker else None,
        )
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open failed", error=exc.response.get("error"))

    async def on_view_submission(
        self, ack: Ack, body: dict[str, Any], view: dict[str, Any]
    ) -> None:
        submission = read_submission(view)
        metadata = submission.metadata
        files = [source_of(f) for f in submission.files] or [
            AttachmentSource.from_json(f) for f in metadata.get("files") or []
        ]
        team = str(metadata.get("team") or body["team"]["id"])
        user = UserRef(PLATFORM, team, body["user"]["id"])
        await self._speak(user)
        # From the Home tab's New edit the channel is the picker's choice.
        channel = str(metadata.get("channel") or submission.channel or "")
        from_home = bool(metadata.get("home"))
        if not channel:
            await ack(
                response_action="errors", errors={CHANNEL_BLOCK: _(texts.HOME_CHOOSE_CHANNEL)}
            )
            return
        context = RequestContext(channel=channel)
        scale = metadata.get("upscale")
        if isinstance(scale, int):
            outcome = await self.conversation.read_options(
                user, "", files=files, context=context, upscale=scale
            )
        else:
            outcome = await self.conversation.read_options(
                user,
                submission.prompt,
                files=files,
                context=context,
                aspect_ratio=submission.aspect_ratio,
                seed=submission.seed,
                output_format=submission.output_format,
                model=submission.model,
                preset=submission.preset,
                count=submission.count,
            )
        if isinstance(outcome, Said):
            # Shown under the prompt field: the modal stays open to be corrected.
            await ack(response_action="errors", errors={"prompt": outcome.text})
            return
        if not await self._bot_is_in(channel):
            # The modal stays open: the user can invite the bot (or, from the Home tab,
            # choose another channel) and submit again.
            field = CHANNEL_BLOCK if submission.channel else "prompt"
            await ack(response_action="errors", errors={field: self._invite()})
            return
        target = {
            "channel": channel,
            "user": user.user,
            "thread_ts": metadata.get("thread_ts"),
            "response_url": metadata.get("response_url"),
        }
        submitted = await self.conversation.submit(
            self._request(user, outcome, target, f"slack:{team}:view:{view['id']}", context)
        )
        await ack()
        if not submitted.duplicate:
            # The command's own response_url costs no Web API call (no tier to share
            # with a burst); sent in the background, so the 200 is not held up. A queued
            # job's answer carries its Cancel button.
            reply = self._reply(target)
            blocks = (
                cancel_blocks(submitted.text, submitted.job_id)
                if submitted.accepted and submitted.job_id
                else None
            )
            answer = reply.respond(submitted.text, blocks) if reply.response_url else None
            self.adapter.status.spawn(answer or reply.tell(submitted.text, blocks))
            if from_home:
                self.adapter.status.spawn(self.publish_home(user))

    async def on_message_shortcut(self, ack: Ack, shortcut: dict[str, Any]) -> None:
        await ack()
        message = shortcut.get("message") or {}
        channel = shortcut["channel"]["id"]
        user = UserRef(PLATFORM, shortcut["team"]["id"], shortcut["user"]["id"])
        await self._speak(user)
        files = [source_of(f) for f in message.get("files") or []]
        response_url = shortcut.get("response_url")
        reply = self._reply({"channel": channel, "user": user.user, "response_url": response_url})
        inputs = self.conversation.inputs_of_message(files)
        if isinstance(inputs, Said):
            self.adapter.status.spawn(reply.tell(inputs.text))
            return
        if not await self._bot_is_in(channel):
            # A shortcut's ack carries no message; its response_url answers "only visible
            # to you" right where the user acted, like the slash command's ack text.
            await reply.respond(self._invite())
            return
        metadata = {
            "channel": channel,
            "user": user.user,
            "team": user.workspace,
            "response_url": response_url,
            "thread_ts": message.get("thread_ts") or message.get("ts"),
            "files": [s.to_json() for s in inputs[:_METADATA_FILES]],
        }
        if len(json.dumps(metadata)) > 3000:
            await reply.tell("That image's details are too long for Slack's form; attach it anew.")
            return
        await self._open_modal(shortcut["trigger_id"], metadata, with_file_input=False)

    # -- messages that address the bot ---------------------------------------------------------

    async def on_mention(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        await self.from_message(event, context)

    async def on_message(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        bot_user = context.get("bot_user_id")
        if event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            return
        if bot_user and f"<@{bot_user}>" in str(event.get("text") or ""):
            await self.from_message(event, context)

    async def from_message(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        """A message addressed to the bot: its files, or the latest image of its thread."""
        if event.get("bot_id"):
            return
        team = str(context.get("team_id") or event.get("team") or "")
        channel = str(event["channel"])
        ts = str(event["ts"])
        thread_ts = event.get("thread_ts")
        user = UserRef(PLATFORM, team, str(event["user"]))
        await self._speak(user)
        key = f"slack:{team}:msg:{channel}:{ts}"
        target = {
            "channel": channel,
            "user": user.user,
            "thread_ts": thread_ts or ts,
            ACKNOWLEDGED: True,  # the acknowledgement is the status message (below)
        }
        reply = self._reply(target)
        files = [source_of(f) for f in event.get("files") or []]
        bot_user = context.get("bot_user_id")
        if thread_ts and (not files or self.conversation.takes_several()):
            # Slack redelivers events, and sends message and app_mention both for one
            # mention: an event already taken skips the thread look-up. Any other repeat
            # goes on to submit, which answers it with its job, and says nothing.
            if await self.conversation.service.job_for_key(key) is not None:
                return
            previous, by_bot = await self._latest_thread_image(
                channel, str(thread_ts), ts, str(bot_user or "")
            )
            # A follow-up takes the previous result first, then its own files.
            files = self.conversation.message_files(files, previous, replied_is_result=by_bot)
        here = RequestContext(channel=channel)
        outcome = await self.conversation.read(
            user,
            str(event.get("text") or ""),
            files=files,
            context=here,
            bot_mentions=[f"<@{bot_user}>"] if bot_user else [],
            platform_admin=self.adapter.platform_admin(user),
        )
        if isinstance(outcome, Said):
            self.adapter.status.spawn(reply.tell(outcome.text))
            return
        submitted = await self.conversation.submit(self._request(user, outcome, target, key, here))
        if submitted.duplicate:
            return
        if submitted.accepted and submitted.job_id:
            # The acknowledgement is the first text of the job's status message: one
            # post, shown when the channel's pace allows, edited as the job goes on.
            line = self.adapter.status.line(submitted.job_id, channel, str(thread_ts or ts))
            text = f"{status_about(user.user, outcome.prompt)} — :hourglass_flowing_sand: "
            line.show(
                text + submitted.text,
                job_metadata(submitted.job_id),
                cancel_blocks(text + submitted.text, submitted.job_id),
            )
        else:
            self.adapter.status.spawn(reply.tell(submitted.text))

    async def on_cancel(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """The acknowledgement's Cancel: the conversation decides (requester or admin)
        and words the answer, shown to the clicker alone."""
        await ack()
        user = UserRef(PLATFORM, str(body["team"]["id"]), str(body["user"]["id"]))
        await self._speak(user)
        job_id = str((body.get("actions") or [{}])[0].get("value") or "")
        text = await self.conversation.cancel(user, job_id, self.adapter.platform_admin(user))
        if body.get("response_url"):
            await respond(text=text, response_type="ephemeral", replace_original=False)
            return
        channel = str((body.get("channel") or {}).get("id") or "")
        await self._reply({"channel": channel, "user": user.user}).tell(text)

    async def on_result_action(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """A result's Re-roll, Edit again, Upscale, preset button or More… select (on the job's
        "Done" status line, views.result_blocks): the conversation layer says what it
        means; an edit is reserved before Slack gets its 200 (process_before_response),
        answered to the clicker alone, and posted in the result's thread."""
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id") or "")
        team = str(body["team"]["id"])
        user = UserRef(PLATFORM, team, str(body["user"]["id"]))
        channel = str((body.get("channel") or {}).get("id") or "")
        await self._speak(user)
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or message.get("ts")
        if action_id == MORE_ACTION_ID:
            job_id = str(action.get("block_id") or "").removeprefix(RESULT_BLOCK_PREFIX)
            preset: str | None = str((action.get("selected_option") or {}).get("value") or "")
        else:
            job_id = str(action.get("value") or "")
            preset = (
                action_id.removeprefix(PRESET_ACTION_PREFIX)
                if action_id.startswith(PRESET_ACTION_PREFIX)
                else None
            )
        if action_id == AGAIN_ACTION_ID:
            await ack()
            nxt = await self.conversation.edit_again(job_id, None)
            if isinstance(nxt, Said):
                await self._answer(body, respond, user, channel, nxt.text)
                return
            metadata = {
                "channel": channel,
                "user": user.user,
                "team": team,
                "thread_ts": thread_ts,
                "files": [s.to_json() for s in nxt.inputs[:_METADATA_FILES]],
            }
            await self._open_modal(
                str(body["trigger_id"]),
                metadata,
                options=EditOptions(model=nxt.model),
                with_file_input=False,
            )
            return
        if action_id == UPSCALE_ACTION_ID:
            outcome: Edit | Said = await self.conversation.upscale(job_id)
        elif preset is not None:
            outcome = await self.conversation.apply_preset(job_id, preset, None)
        else:
            outcome = await self.conversation.reroll(job_id)
        if isinstance(outcome, Said):
            await ack()
            await self._answer(body, respond, user, channel, outcome.text)
            return
        target = {"channel": channel, "user": user.user, "thread_ts": thread_ts}
        key = f"slack:{team}:action:{action.get('action_ts') or body.get('trigger_id')}"
        here = RequestContext(channel=channel)
        submitted = await self.conversation.submit(self._request(user, outcome, target, key, here))
        await ack()
        if not submitted.duplicate:
            await self._answer(body, respond, user, channel, submitted.text)

    async def on_delete_result(self, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        """A result's Delete: the person who asked for it or an admin (the conversation
        layer decides) removes the result's file (files.delete: the bot uploaded it), and
        the status line loses its buttons; history no longer links to it. Anyone else is
        told privately, and nothing changes."""
        await ack()
        action = (body.get("actions") or [{}])[0]
        job_id = str(action.get("value") or "")
        user = UserRef(PLATFORM, str(body["team"]["id"]), str(body["user"]["id"]))
        await self._speak(user)
        channel = str((body.get("channel") or {}).get("id") or "")
        refused = await self.conversation.may_delete(
            user, job_id, self.adapter.platform_admin(user)
        )
        job = await self.conversation.service.job(job_id) if refused is None else None
        file_id = str((job.delivered or {}).get("file") or "") if job is not None else ""
        if refused is not None or not file_id:
            text = refused.text if refused is not None else _(texts.RESULT_IMAGE_GONE)
            await self._answer(body, respond, user, channel, text)
            return
        try:
            await self.client.files_delete(file=file_id)
        except SlackApiError as exc:
            if exc.response.get("error") != "file_not_found":  # already gone: done
                log.warning("files.delete failed", job_id=job_id, error=exc.response.get("error"))
                await self._answer(body, respond, user, channel, _(texts.DELETE_FAILED))
                return
        await self.conversation.deleted(job_id)
        message = body.get("message") or {}
        if message.get("ts"):
            # chat.update with text and no blocks removes the message's blocks (its
            # reference page, https://docs.slack.dev/reference/methods/chat.update).
            try:
                await self.client.chat_update(
                    channel=channel, ts=str(message["ts"]), text=str(message.get("text") or "")
                )
            except SlackApiError as exc:
                log.warning("chat.update failed", job_id=job_id, error=exc.response.get("error"))

    async def _answer(
        self, body: dict[str, Any], respond: Respond, user: UserRef, channel: str, text: str
    ) -> None:
        """To the clicker alone: through the action's response_url, else an ephemeral."""
        if body.get("response_url"):
            await respond(text=text, response_type="ephemeral", replace_original=False)
            return
        await self._reply({"channel": channel, "user": user.user}).tell(text)

    async def _bot_is_in(self, channel: str) -> bool:
        return await self.adapter.membership.is_member(channel)

    def _invite(self) -> str:
        return not_in_channel(self.adapter.bot_name)

    def _reply(self, target: dict[str, Any]) -> SlackReply:
        return SlackReply(
            self.client, target, bot_name=self.adapter.bot_name, board=self.adapter.status
        )

    async def _latest_thread_image(
        self, channel: str, thread_ts: str, before: str, bot_user: str = ""
    ) -> tuple[AttachmentSource | None, bool]:
        """Multi-turn editing: "now make her wave" in a thread edits its latest image;
        also whether the bot posted it (a result, which a follow-up with files of its
        own still takes first)."""
        try:
            answer = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=200
            )
        except SlackApiError as exc:
            self.adapter.api_error("conversations.replies", exc)
            return None, False
        messages: Sequence[dict[str, Any]] = answer.get("messages") or []
        for message in reversed(messages):
            if float(message.get("ts", 0)) >= float(before):
                continue
            images = [f for f in message.get("files") or [] if _is_image(f)]
            if images:
                by_bot = bool(message.get("bot_id")) or (
                    bool(bot_user) and message.get("user") == bot_user
                )
                return source_of(images[-1]), by_bot
        return None, False

    def _request(
        self,
        user: UserRef,
        edit: Edit,
        target: dict[str, Any],
        key: str,
        context: RequestContext,
    ) -> EditRequest:
        return EditRequest(
            user=user,
            prompt=edit.prompt,
            options=edit.options,
            attachments=tuple(self.adapter.attachment_for(s) for s in edit.inputs),
            reply_target=target,
            idempotency_key=key,
            context=context,
            left_out=edit.left_out,
        )
