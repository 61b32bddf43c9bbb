"""Talking back in Slack: a status message updated in place, the result uploaded into the
thread, failures shown only to the requester."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.style import escape
from bot.domain import EditResult, Job
from bot.texts import result_details, short

log = structlog.get_logger("kontext.slack")

_STAGES = {
    "queued": ":hourglass_flowing_sand: Queued",
    "editing": ":art: Editing",
}


class SlackReply:
    """Built from a job's stored reply target, so it also works after a restart."""

    def __init__(self, client: AsyncWebClient, target: Mapping[str, Any]) -> None:
        self.client = client
        self.channel = str(target["channel"])
        self.user = str(target["user"])
        self.thread_ts: str | None = target.get("thread_ts")
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
            log.warning("ephemeral message failed", error=exc.response.get("error"))
