"""A Platform that records what the core tells the user, for runner and service tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.chat.platforms import NoConnection
from bot.chat.texts import group_heading, group_member_line
from bot.domain import Attachment, AttachmentSource, EditResult, GroupResult, Job
from bot.errors import UserInputError


@dataclass
class RecordingReply:
    frontend: RecordingFrontend

    async def progress(self, job: Job, stage: str) -> None:
        self.frontend.progress.append((job.id, stage))
        if self.frontend.progress_failures > 0:
            self.frontend.progress_failures -= 1
            raise TimeoutError  # a platform that did not answer in time

    async def deliver(self, result: EditResult, *, maybe_delivered: bool = False) -> None:
        self.frontend.maybe_delivered.append(maybe_delivered)
        if self.frontend.deliver_failures > 0:
            self.frontend.deliver_failures -= 1
            raise ConnectionError("platform is down")
        self.frontend.delivered.append(result)
        self.frontend.done.set()

    async def deliver_group(self, group: GroupResult, *, maybe_delivered: bool = False) -> None:
        self.frontend.maybe_delivered.append(maybe_delivered)
        if self.frontend.deliver_failures > 0:
            self.frontend.deliver_failures -= 1
            raise ConnectionError("platform is down")
        self.frontend.groups.append(group)
        # The words a platform would post, in the language the pipeline speaks now.
        self.frontend.group_texts.append(
            "\n".join([group_heading(group), *(group_member_line(m) for m in group.members)])
        )
        self.frontend.done.set()

    async def fail(self, job: Job, message: str) -> None:
        self.frontend.failures.append((job.id, message))
        self.frontend.done.set()

    async def tell(self, text: str) -> None:
        self.frontend.told.append(text)


@dataclass
class RecordingFrontend(NoConnection):
    platform: str = "slack"
    files: dict[str, bytes] = field(default_factory=dict)
    progress: list[tuple[str, str]] = field(default_factory=list)
    delivered: list[EditResult] = field(default_factory=list)
    # Groups of variations (``--n``) posted together.
    groups: list[GroupResult] = field(default_factory=list)
    group_texts: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    told: list[str] = field(default_factory=list)
    deliver_failures: int = 0
    progress_failures: int = 0
    fetch_timeouts: int = 0
    # The ``maybe_delivered`` flag of every delivery attempt, in order.
    maybe_delivered: list[bool] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def reply_for(self, job: Job) -> RecordingReply:
        return RecordingReply(self)

    def attachment_for(self, source: AttachmentSource) -> Attachment:
        async def fetch(max_bytes: int) -> bytes:
            if self.fetch_timeouts > 0:
                self.fetch_timeouts -= 1
                raise TimeoutError  # the platform's file host did not answer in time
            data = self.files.get(source.locator)
            if data is None:
                raise UserInputError("That file is gone.")
            return data[: max_bytes + 1]

        return Attachment(source=source, fetch=fetch)

    def attach(self, name: str, data: bytes, content_type: str = "image/png") -> Attachment:
        self.files[name] = data
        return self.attachment_for(AttachmentSource(name, content_type, len(data), name))
