"""Talking back in Slack: a status message updated in place, the result uploaded into the
thread, failures shown only to the requester.

Where the bot cannot post (it was removed from the channel after the request, the
channel was archived or deleted), a delivery is final: ``deliver`` raises
``DeliveryImpossible`` and the runner refunds at once instead of retrying. Private
notices then go where no channel membership is needed: the ``response_url`` of the
slash command or shortcut that started the request (kept in the reply target, valid
for 30 minutes and 5 uses), else a DM from the bot (chat.postMessage to the user's id,
the app's Messages tab).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.style import escape
from bot.domain import EditResult, Job
from bot.errors import DeliveryImpossible
from bot.texts import result_details, short

log = structlog.get_logger("kontext.slack")

# Errors saying the bot cannot post in the channel now and will not by retrying
# (https://docs.slack.dev/reference/methods/chat.postMessage#errors,
# .../files.completeUploadExternal#errors); user_not_in_channel (chat.postEphemeral): the
# requester left the channel.
UNREACHABLE = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
_NOT_HERE = UNREACHABLE | {"user_not_in_channel"}

Deliver = TypeVar("Deliver", bound=Callable[..., Awaitable[None]])

_STAGES = {
    "queued": ":hourglass_flowing_sand: Queued",
    "editing": ":art: Editing",
}


def _unreachable_is_final(deliver: Deliver) -> Deliver:
    """A delivery into a channel the bot cannot post in is final (no retries)."""

    @functools.wraps(deliver)
    async def guarded(self: SlackReply, result: EditResult) -> None:
        try:
            await deliver(self, result)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in UNREACHABLE:
                raise
            if self.on_unreachable is not None:
                self.on_unreachable(self.channel)
            raise DeliveryImpossible(
                "I can't post in that channel any more (I was removed from it, or it was "
                f"archived), so the edited image could not be delivered. To use me there, "
                f"invite me back with `/invite @{self.bot_name}`.",
                detail=f"slack {error}",
            ) from exc

    return cast(Deliver, guarded)


class SlackReply:
    """Built from a job's stored reply target, so it also works after a restart."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Mapping[str, Any],
        *,
        bot_name: str = "kontext",
        on_unreachable: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.channel = str(target["channel"])
        self.user = str(target["user"])
        self.thread_ts: str | None = target.get("thread_ts")
        self.response_url: str | None = target.get("response_url")
        self.bot_name = bot_name
        self.on_unreachable = on_unreachable  # told the channel the bot cannot post in
        self.status_ts: str | None = None

    async def _status(self, job: Job, text: str) -> None:
        line = f"<@{self.user}>: _{escape(short(job.prompt, 120))}_ — {text}"
        try:
            if self.status_ts is None:
                answer = await self.client.chat_postMessage(
                    channel=self.channel, thread_ts=self.thread_ts, text=line
                )
                self.status_ts = str(answer["ts"])
            else:
                await self.client.chat_update(channel=self.channel, ts=self.status_ts, text=line)
        except SlackApiError as exc:
            # Progress is a courtesy: a missing channel permission must not fail the job.
            log.warning("status message failed", job_id=job.id, error=exc.response.get("error"))

    async def progress(self, job: Job, stage: str) -> None:
        await self._status(job, _STAGES.get(stage, stage) + "…")

    @_unreachable_is_final
    async def deliver(self, result: EditResult) -> None:
        job = result.job
        details = result_details(job.seed, job.cost, result.balance_after)
        comment = f"<@{self.user}>: _{escape(short(job.prompt, 120))}_ ({', '.join(details)})"
        await self.client.files_upload_v2(
            channel=self.channel,
            thread_ts=self.thread_ts,
            file=result.image,
            filename=result.filename,
            title=short(job.prompt, 250),
            initial_comment=comment,
        )
        if self.status_ts is not None:
            await self._status(job, f":white_check_mark: Done in {result.elapsed_seconds:.0f} s")

    async def fail(self, job: Job, message: str) -> None:
        if self.status_ts is not None:
            await self._status(job, ":x: Failed")
        await self.tell(message)

    async def tell(self, text: str) -> None:
        try:
            await self.client.chat_postEphemeral(
                channel=self.channel, user=self.user, thread_ts=self.thread_ts, text=text
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("ephemeral message failed", error=error)
            if error in _NOT_HERE:
                await self.respond(text)

    async def respond(self, text: str) -> None:
        """Tell the requester privately without posting in the channel: through the
        request's response_url (shown only to them, where they asked), else a DM."""
        if self.response_url:
            try:
                hook = AsyncWebhookClient(self.response_url, session=self.client.session)
                answer = await hook.send(
                    text=text, response_type="ephemeral", replace_original=False
                )
                if answer.status_code == 200:
                    return
                log.warning("response_url refused", status=answer.status_code)
            except Exception as exc:  # expired or unreachable: the DM below
                log.warning("response_url failed", error=repr(exc))
        try:
            await self.client.chat_postMessage(channel=self.user, text=text)
        except SlackApiError as exc:
            log.warning("direct message failed", error=exc.response.get("error"))
