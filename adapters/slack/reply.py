"""Talking back in Slack: a status message updated in place, the result uploaded into the
thread, failures shown only to the requester.

Where the bot cannot post (it was removed from the channel after the request, the
channel was archived or deleted), a delivery is final: ``deliver`` raises
``DeliveryImpossible`` and the runner refunds at once instead of retrying. Private
notices then go where no channel membership is needed: the ``response_url`` of the
slash command or shortcut that started the request (kept in the reply target, valid
for 30 minutes and 5 uses), else a DM from the bot (chat.postMessage to the user's id,
the app's Messages tab).

A delivery is a new file share, so posting it again would post the image twice. Both
posts are made findable instead: the status message carries the job id in its message
metadata (``kontext_job``), and the upload carries the job's short marker (the file
name ``kontext-<id8>.<ext>`` and ``job <id8>`` in its comment), since files_upload_v2
cannot carry metadata (its files.completeUploadExternal sends only the file ids and
titles, the channel, thread_ts and the initial comment). When the core says a delivery
may already have happened (a restart, a retried attempt), the reply looks in the
conversation first and posts only if the image is not there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.pacing import is_rate_limited, retry_after
from adapters.slack.status import NO_ANSWER, StatusBoard, StatusLine
from adapters.slack.style import escape
from adapters.slack.views import cancel_blocks, result_blocks
from bot.chat.presets import ResultLayout
from bot.chat.texts import (
    channel_unreachable,
    fitted_note,
    group_heading,
    group_member_line,
    job_about,
    provider_note,
    result_details,
    short,
)
from bot.domain import AttachmentSource, EditResult, GroupResult, Job
from bot.errors import DeliveryDeferred, DeliveryImpossible
from bot.i18n import N_, _
from bot.images import fit_upload

log = structlog.get_logger("kontext.slack")

# Errors saying the bot cannot post in the channel now and will not by retrying
# (https://docs.slack.dev/reference/methods/chat.postMessage#errors,
# .../files.completeUploadExternal#errors); user_not_in_channel (chat.postEphemeral): the
# requester left the channel.
UNREACHABLE = frozenset({"not_in_channel", "channel_not_found", "is_archived"})
_NOT_HERE = UNREACHABLE | {"user_not_in_channel"}

T = TypeVar("T")


# The message metadata event type on the status message; its payload holds the job id.
JOB_EVENT = "kontext_job"
# In a reply target: the request's acknowledgement is the job's status message.
ACKNOWLEDGED = "acknowledged_in_status"
# How far back the look for an earlier post reaches: messages older than the job (less a
# margin for clock skew between this host and Slack) cannot be its post, and a page of
# recent messages is the most one look reads.
_LOOK_MARGIN_SECONDS = 600.0
# "Files uploaded to Slack can be up to 1 GB" (https://slack.com/help/articles/201330736,
# and files.getUploadURLExternal's ``length``); a result over it is fitted.
UPLOAD_LIMIT = 1024**3
_LOOK_LIMIT = 200

# Translated where they are shown (the job's language, bot.i18n).
_STAGES = {
    "queued": (":hourglass_flowing_sand:", N_("Queued")),
    "editing": (":art:", N_("Editing")),
}


class SlackReply:
    """Built from a job's stored reply target, so it also works after a restart."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: Mapping[str, Any],
        *,
        bot_name: str = "kontext",
        on_unreachable: Callable[[str], None] | None = None,
        board: StatusBoard | None = None,
        layout: ResultLayout | None = None,
        upload_limit: int = UPLOAD_LIMIT,
    ) -> None:
        self.client = client
        self.upload_limit = upload_limit
        # A result's buttons (the conversation layer's), put on the "Done" status line.
        self.layout = layout
        self.channel = str(target["channel"])
        self.user = str(target["user"])
        self.thread_ts: str | None = target.get("thread_ts")
        self.response_url: str | None = target.get("response_url")
        # The request was acknowledged in the job's status message (a mention): that
        # message exists, or soon will, wherever the request was received.
        self.acknowledged_in_status = bool(target.get(ACKNOWLEDGED))
        self.bot_name = bot_name
        self.on_unreachable = on_unreachable  # told the channel the bot cannot post in
        # The adapter's board, shared with the listeners (a mention's acknowledgement is
        # the first text of its status message); a reply of its own has one of its own.
        self.board = board or StatusBoard(client)

    def _about(self, job: Job) -> str:
        """Whose request and what it asked, as every public post of the job opens; the
        prompt escaped, so it cannot ping anyone."""
        return status_about(self.user, job_about(job))

    def line(self, job: Job) -> StatusLine:
        async def find() -> str | None:
            return await self._find_status(job)

        finder = find if self.acknowledged_in_status else None
        line = self.board.line(job.id, self.channel, self.thread_ts, finder)
        line.shown = line.shown or self.acknowledged_in_status
        return line

    async def _find_status(self, job: Job) -> str | None:
        """The ts of the job's status message, posted by the process that received the
        request, found by its metadata; None while it is not there."""
        for message in await self._recent(job):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == JOB_EVENT and payload.get("job_id") == job.id:
                return str(message["ts"])
        return None

    async def _recent(self, job: Job) -> list[dict[str, Any]]:
        """The conversation's messages since the job was made (its thread, or the
        channel's recent history for a top-level post), with their metadata."""
        oldest = f"{max(0.0, job.created_at - _LOOK_MARGIN_SECONDS):.6f}"
        if self.thread_ts:
            answer = await self.client.conversations_replies(
                channel=self.channel,
                ts=self.thread_ts,
                oldest=oldest,
                limit=_LOOK_LIMIT,
                include_all_metadata=True,
            )
        else:
            answer = await self.client.conversations_history(
                channel=self.channel,
                oldest=oldest,
                limit=_LOOK_LIMIT,
                include_all_metadata=True,
            )
        return list(answer.get("messages") or [])

    async def _status(
        self, job: Job, text: str, *, cancel: bool = False, result: bool = False
    ) -> None:
        """Shown when Slack allows (``status.py``): never waited for, never raises.
        ``cancel``: the job can still be stopped, so the line keeps its Cancel button;
        ``result``: the job is done, the line carries the result's buttons."""
        line = f"{self._about(job)} — {text}"
        blocks = cancel_blocks(line, job.id) if cancel else None
        if result and self.layout is not None:
            blocks = result_blocks(line, job.id, self.layout)
        self.line(job).show(line, job_metadata(job.id), blocks)

    async def progress(self, job: Job, stage: str) -> None:
        if job.group_id is not None and job.group_index > 1:
            # Variations share the first one's status message (one post for the group).
            return
        emoji, word = _STAGES.get(stage, ("", stage))
        await self._status(job, f"{emoji} {_(word)}…".lstrip(), cancel=True)

    async def deliver(
        self, result: EditResult, *, maybe_delivered: bool = False
    ) -> dict[str, Any] | None:
        """Post the result; a channel the bot cannot post in is final (no retries).
        Returns where it is (``delivered_at``) for the user's history."""
        return await self._refusals_told(self._deliver(result, maybe_delivered=maybe_delivered))

    async def _refusals_told(self, posting: Awaitable[T], images: int = 1) -> T:
        """Slack's refusals of a post, as the runner understands them: "not yet" (rate
        limited: the result is kept and posted when Slack allows) or "never" (the channel
        is closed to the bot: refunded, with how to invite it back)."""
        try:
            return await posting
        except SlackApiError as exc:
            error = exc.response.get("error")
            if is_rate_limited(exc):
                method = str(exc.response.api_url).rstrip("/").rsplit("/", 1)[-1]
                raise DeliveryDeferred("slack", method, retry_after(exc)) from exc
            if error not in UNREACHABLE:
                raise
            if self.on_unreachable is not None:
                self.on_unreachable(self.channel)
            raise DeliveryImpossible(
                channel_unreachable(self.bot_name, images),
                detail=f"slack {error}",
            ) from exc

    async def _deliver(self, result: EditResult, *, maybe_delivered: bool) -> dict[str, Any] | None:
        job = result.job
        posted = await self._already_posted(job, result.filename) if maybe_delivered else None
        if posted is not None:
            log.info("result already in the conversation; not posted again", job_id=job.id)
        else:
            posted = await self._upload(result)
        if self.line(job).shown:
            done = _("Done in {seconds} s").format(seconds=f"{result.elapsed_seconds:.0f}")
            await self._status(job, f":white_check_mark: {done}", result=True)
        return self.delivered_at(posted)

    def delivered_at(self, file: Mapping[str, Any]) -> dict[str, Any] | None:
        """Where the result is, for history: the channel (and thread), the shared
        file's id and the ts of the message it is on where Slack names it (the file's
        ``shares``), and ``link``, Slack's own permalink of the file (it opens the image
        in its conversation; no extra call or scope)."""
        if not file.get("id"):
            return None
        where: dict[str, Any] = {"channel": self.channel, "file": str(file["id"])}
        if self.thread_ts:
            where["thread_ts"] = self.thread_ts
        ts = file.get("ts") or _share_ts(file, self.channel)
        if ts:
            where["ts"] = str(ts)
        if file.get("permalink"):
            where["link"] = str(file["permalink"])
        # The result as an input (a preset's or Upscale button, Edit again from history
        # or the Home tab): the file id, looked up with files.info when it is used, since
        # download URLs can change.
        where["image"] = AttachmentSource(
            name=str(file.get("name") or file["id"]),
            content_type=file.get("mimetype"),
            size=file.get("size"),
            locator=f"file:{file['id']}",
        ).to_json()
        return where

    async def _upload(self, result: EditResult) -> dict[str, Any]:
        job = result.job
        details = [
            *result_details(job.seed, job.cost, result.balance_after, provider=job.provider),
            job_marker(job),
        ]
        comment = f"{self._about(job)} ({', '.join(details)})"
        # Slack's file size limit (bot.images.fitting never raises); said when used.
        fitted = await asyncio.to_thread(fit_upload, result.image, max_bytes=self.upload_limit)
        filename = result.filename
        if fitted.change:
            filename = filename.rsplit(".", 1)[0] + ".jpg"
            smaller = fitted.change == "smaller"
            note = fitted_note("slack", self.upload_limit, fitted.width, fitted.height, smaller)
            comment = f"{comment}\n{note}"
        answer = await self.client.files_upload_v2(
            channel=self.channel,
            thread_ts=self.thread_ts,
            file=fitted.data,
            filename=filename,
            title=short(job_about(job), 250),
            initial_comment=comment,
        )
        # files.completeUploadExternal answers with the file objects (id, permalink,
        # shares); slack_sdk puts a single one under "file" too.
        file = answer.get("file")
        return dict(file) if isinstance(file, Mapping) else {}

    async def _already_posted(self, job: Job, filename: str) -> dict[str, Any] | None:
        """Whether the bot's upload of this job is in the conversation (the thread, or the
        channel's recent history for a top-level post); finds the status message by its
        metadata on the way, so the "Done" edit lands on it after a restart. A failed
        look says "not there": posting twice beats not posting. Returns the found post's
        file (with the message's ``ts``), else None."""
        try:
            messages = await self._recent(job)
        except SlackApiError as exc:
            log.warning(
                "could not look for an earlier post; posting",
                job_id=job.id,
                error=exc.response.get("error"),
            )
            return None
        found: dict[str, Any] | None = None
        marker = job_marker(job)
        for message in messages:
            if not message.get("bot_id"):
                continue
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == JOB_EVENT and payload.get("job_id") == job.id:
                line = self.line(job)
                line.ts = line.ts or str(message["ts"])
                line.shown = True
            files = message.get("files") or []
            names = {str(f.get("name")) for f in files}
            if files and (filename in names or marker in str(message.get("text"))):
                found = {**files[0], "ts": message.get("ts")}
        return found

    async def deliver_group(
        self, group: GroupResult, *, maybe_delivered: bool = False
    ) -> dict[str, dict[str, Any]] | None:
        """Every variation in one message (``--n``): one files_upload_v2 with all the
        images and one comment naming each (seed, or why it failed and its refund);
        findable like a single result by the first image's name and the group's marker,
        so a repeated attempt does not post it twice."""
        return await self._refusals_told(
            self._deliver_group(group, maybe_delivered=maybe_delivered), len(group.results)
        )

    async def _deliver_group(
        self, group: GroupResult, *, maybe_delivered: bool
    ) -> dict[str, dict[str, Any]] | None:
        first = group.first
        results = group.results
        files: list[dict[str, Any]] = []
        found = await self._already_posted(first, results[0].filename) if maybe_delivered else None
        if found is not None:
            log.info("group already in the conversation; not posted again", job_id=first.id)
            files = [found]
        else:
            lines = [
                f"{self._about(first)} ({group_heading(group)}, {job_marker(first)})",
                *(group_member_line(m) for m in group.members),
            ]
            note = provider_note(first.provider)
            if note:
                lines.append(note)
            answer = await self.client.files_upload_v2(
                channel=self.channel,
                thread_ts=self.thread_ts,
                file_uploads=[
                    {
                        "file": r.image,
                        "filename": r.filename,
                        "title": f"#{r.job.group_index} {short(first.prompt, 240)}",
                    }
                    for r in results
                ],
                initial_comment="\n".join(lines),
            )
            files = [dict(f) for f in answer.get("files") or [] if isinstance(f, Mapping)]
        if self.line(first).shown:
            done = _("Done in {seconds} s").format(seconds=f"{group.elapsed_seconds:.0f}")
            await self._status(first, f":white_check_mark: {done}")
        by_name = {str(f.get("name") or f.get("title")): f for f in files}
        where: dict[str, dict[str, Any]] = {}
        for result in results:
            file = by_name.get(result.filename) or (files[0] if files else {})
            place = self.delivered_at(file)
            if place is not None:
                where[result.job.id] = place
        return where

    async def fail(self, job: Job, message: str) -> None:
        if self.line(job).shown:
            await self._status(job, ":x: Failed")
        await self.tell(message)

    async def tell(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """A private answer; never raises for Slack's sake. What it says (a request
        queued, a refusal) is already decided and stored, so a Slack that does not answer
        in time (a burst of a thousand) must not turn an accepted event into an error,
        which Slack would only deliver again. ``blocks``: the same text with buttons
        (a queued job's Cancel); ``text`` stays the notification's words."""
        try:
            await self.client.chat_postEphemeral(
                channel=self.channel,
                user=self.user,
                thread_ts=self.thread_ts,
                text=text,
                blocks=blocks or None,
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("ephemeral message failed", error=error)
            if error in _NOT_HERE:
                await self.respond(text)
        except NO_ANSWER as exc:
            log.warning("ephemeral message failed", error=type(exc).__name__)

    async def respond(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """Tell the requester privately without posting in the channel: through the
        request's response_url (shown only to them, where they asked), else a DM.
        ``blocks``: the same text with buttons (a queued job's Cancel)."""
        if self.response_url:
            try:
                hook = AsyncWebhookClient(self.response_url, session=self.client.session)
                answer = await hook.send(
                    text=text, blocks=blocks, response_type="ephemeral", replace_original=False
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


def status_about(user: str, prompt: str) -> str:
    """How every public post of a job opens: whose request and what it asked (escaped,
    so a prompt cannot ping anyone)."""
    return f"<@{user}>: _{escape(short(prompt, 120))}_"


def job_metadata(job_id: str) -> dict[str, Any]:
    """Message metadata naming the job (https://docs.slack.dev/messaging/message-metadata)."""
    return {"event_type": JOB_EVENT, "event_payload": {"job_id": job_id}}


def job_marker(job: Job) -> str:
    """The short, stable mark of a job's upload; the same 8 characters as its file name."""
    return f"job {job.id[:8]}"


def _share_ts(file: Mapping[str, Any], channel: str) -> str | None:
    """The ts of the message sharing ``file`` in ``channel``, from the file object's
    ``shares`` ({"public"|"private": {channel: [{"ts": ...}, ...]}}); Slack may fill it
    in only after the upload returns, so it can be missing."""
    for kind in ("public", "private"):
        posts = ((file.get("shares") or {}).get(kind) or {}).get(channel) or []
        if posts and posts[0].get("ts"):
            return str(posts[0]["ts"])
    return None
