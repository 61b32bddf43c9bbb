"""Progress shown in the chat: a courtesy that never fails a job, and a provider's step
progress without flooding it.

ComfyUI reports every sampler step; a platform edit per step would be 28 edits of one
message per image and run into the platforms' rate limits, so steps go out throttled.
"""

from __future__ import annotations

import time

import structlog

from bot.domain import Job, Reply

log = structlog.get_logger("kontext.pipeline")


async def show_progress(reply: Reply, job: Job, text: str) -> None:
    """``reply.progress``, for every stage of every job. A platform that refuses the
    status line or does not answer in time (in a burst, status updates are what time out
    first) costs the user that line, never the edit: the job goes on."""
    try:
        await reply.progress(job, text)
    except Exception as exc:
        log.warning("progress not shown", job_id=job.id, stage=text, error=repr(exc))


class StepRelay:
    """A provider's step progress ("step 12 of 28") for one job, at most once per
    ``interval`` and only when it changed: the first step shows at once, later ones as
    the throttle allows, so a 28-step job never makes 28 platform edits."""

    def __init__(self, reply: Reply, job: Job, interval: float) -> None:
        self.reply, self.job, self.interval = reply, job, interval
        self.shown: str | None = None
        self.at = -float("inf")

    async def show(self, progress: tuple[int, int] | None) -> None:
        if progress is None:
            return
        text = f"step {progress[0]} of {progress[1]}"
        now = time.monotonic()
        if text == self.shown or now - self.at < self.interval:
            return
        self.shown, self.at = text, now
        await show_progress(self.reply, self.job, text)
