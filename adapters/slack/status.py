"""Each job's status message in Slack: posted once, edited in place, never waited for.

A status line is a courtesy (the result and the private answers are what matter), and
in a burst it is what Slack's limits hit first: one channel takes about one
``chat.postMessage`` a second, and ``chat.update`` is Tier 3 (50 a minute). So a
status change never blocks the job or the listener that asked for it: ``show`` records
the newest text and returns, and one sender per message posts it (the first time) or
edits it. While a send is on its way, newer texts replace each other: at most one edit
is pending per message, and the message always ends on the newest text. A mention's
acknowledgement ("Queued, position 3") is the first text of the job's status message, so
it costs no call of its own.

Lines are kept by job id, so the listener that acknowledged a request and the runner
that edits it share one message in one process. A runner that does not know the
message (another process acknowledged the request, or this one restarted) must not post
a second one: a line with a ``finder`` looks the message up by its metadata
(``reply.py``) and, while it is not there yet (the acknowledging process is still
waiting for the channel's pace), keeps its text and looks again a little later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.pacing import turn

log = structlog.get_logger("kontext.slack")

# Status lines remembered (the ts of each job's message); older ones are forgotten, and a
# job that outlives its entry finds its message again by metadata or posts a new one.
_KEEP = 4096
# Slack did not answer in time (slack_sdk's timeout) or the connection dropped.
NO_ANSWER = (TimeoutError, aiohttp.ClientError)
# How long a line that may not post waits between looks for its message, and how often
# it looks before its texts are given up (the result is posted regardless).
_FIND_PAUSES = (1.0, 2.0, 4.0, 8.0, 16.0)

Finder = Callable[[], Awaitable[str | None]]


class StatusLine:
    def __init__(
        self,
        board: StatusBoard,
        job_id: str,
        channel: str,
        thread_ts: str | None,
        finder: Finder | None = None,
    ) -> None:
        self.board = board
        self.job_id = job_id
        self.channel = channel
        self.thread_ts = thread_ts
        # Set: the message was posted by whoever acknowledged the request; find it.
        self.finder = finder
        self._looks = 0
        self.ts: str | None = None  # the message, once posted (or found)
        self.shown = False  # a text was ever asked for: the job has a status message
        self._pending: tuple[str, dict[str, Any], list[dict[str, Any]] | None] | None = None
        self._sender: asyncio.Task[None] | None = None

    def show(
        self, text: str, metadata: dict[str, Any], blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """The newest text of this message; sent when the one before it is done.
        ``blocks``: the same text with a button (Cancel while the job waits or runs). A
        later text without blocks takes the button away: chat.update with ``text`` and
        no ``blocks`` removes the message's blocks (chat.update's ``blocks`` argument,
        https://api.slack.com/methods/chat.update)."""
        self.shown = True
        self._pending = (text, metadata, blocks)
        if self._sender is None or self._sender.done():
            self._sender = self.board.spawn(self._send_pending())

    async def settled(self) -> None:
        """Until every text asked for so far was sent (or given up)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _send_pending(self) -> None:
        while self._pending is not None:
            if self.ts is None and self.finder is not None and not await self._found():
                return
            method = "chat.postMessage" if self.ts is None else "chat.update"
            async with turn(self.board.client, method, self.channel):
                # The newest text once the call may go: those that came while it
                # waited for Slack's pace are never sent.
                if self._pending is None:
                    return
                text, metadata, blocks = self._pending
                self._pending = None
                await self._send(text, metadata, blocks)

    async def _found(self) -> bool:
        """Whether the message someone else posted is known now; looks a few times."""
        assert self.finder is not None
        while self._looks < len(_FIND_PAUSES):
            try:
                self.ts = await self.finder()
            except Exception as exc:
                log.warning("status message look-up failed", job_id=self.job_id, error=repr(exc))
            if self.ts is not None:
                return True
            await asyncio.sleep(_FIND_PAUSES[self._looks])
            self._looks += 1
        self._pending = None  # never posted where we can find it: these texts go
        return False

    async def _send(
        self, text: str, metadata: dict[str, Any], blocks: list[dict[str, Any]] | None = None
    ) -> None:
        client = self.board.client
        try:
            if self.ts is None:
                answer = await client.chat_postMessage(
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    text=text,
                    metadata=metadata,
                    blocks=blocks,
                )
                self.ts = str(answer["ts"])
            else:
                await client.chat_update(
                    channel=self.channel, ts=self.ts, text=text, metadata=metadata, blocks=blocks
                )
        except SlackApiError as exc:
            # A missing permission, or a limit slack_sdk's retries did not outlast: this
            # text is lost, a newer one (if any) is still sent.
            log.warning(
                "status message failed", job_id=self.job_id, error=exc.response.get("error")
            )
        except NO_ANSWER as exc:
            log.warning("status message failed", job_id=self.job_id, error=type(exc).__name__)


class StatusBoard:
    """The status lines of one Slack adapter, and the courtesy sends it does not wait for."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._lines: OrderedDict[str, StatusLine] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def line(
        self, job_id: str, channel: str, thread_ts: str | None, finder: Finder | None = None
    ) -> StatusLine:
        """The job's line; ``finder`` only counts when the line is new here."""
        found = self._lines.get(job_id)
        if found is None:
            found = StatusLine(self, job_id, channel, thread_ts, finder)
            self._lines[job_id] = found
            if len(self._lines) > _KEEP:
                self._lines.popitem(last=False)
        self._lines.move_to_end(job_id)
        return found

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` in the background, kept until done (and awaited at ``drain``)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("slack courtesy send failed", error=repr(task.exception()))

    async def idle(self) -> None:
        """Until every send started so far (and those they started) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def drain(self, grace: float) -> None:
        """At shutdown: let the sends in flight finish for up to ``grace`` seconds."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
