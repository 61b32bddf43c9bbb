"""The words of DESIGN.md as types: who asked, what they asked for, where to answer.

Adapters build these from platform events; the core never sees a platform object.
Everything a job needs after a restart (attachment source, reply target) is plain data
here so it can be stored and handed back to the adapter that knows how to use it.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from bot.errors import UserInputError
from bot.i18n import _

_REF_PART = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_PLATFORM = re.compile(r"^[a-z][a-z0-9_]{0,15}$")


@dataclass(frozen=True, order=True)
class UserRef:
    """``platform:workspace:user``; quotas, admin lists and the CLI all use this form."""

    platform: str
    workspace: str
    user: str

    @classmethod
    def parse(cls, text: str) -> UserRef:
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise UserInputError(
                _(
                    "'{text}' is not a user reference: write platform:workspace:user, "
                    "e.g. slack:T0123:U0456 or discord:9876:1234"
                ).format(text=text)
            )
        platform, workspace, user = parts
        if not _PLATFORM.match(platform):
            raise UserInputError(
                _("'{platform}' is not a platform name (e.g. slack, discord)").format(
                    platform=platform
                )
            )
        if not _REF_PART.match(workspace):
            raise UserInputError(
                _("'{part}' is not a valid workspace id in '{text}'").format(
                    part=workspace, text=text
                )
            )
        if not _REF_PART.match(user):
            raise UserInputError(
                _("'{part}' is not a valid user id in '{text}'").format(part=user, text=text)
            )
        return cls(platform, workspace, user)

    @classmethod
    def local(cls, platform: str) -> UserRef:
        """The person at this terminal (``console:local:<os user>``, and the operator of
        the CLI as ``cli:local:<os user>``)."""
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = "user"
        return cls(platform, "local", re.sub(r"[^A-Za-z0-9_.@-]", "_", name)[:64] or "user")

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.user}"


OutputFormat = Literal["png", "jpg", "webp"]  # webp: FLUX.2 (bot.credits.model_profiles)

ASPECT_RATIOS: tuple[str, ...] = (
    "match_input_image",
    "1:1",
    "16:9",
    "9:16",
    "4:3",
    "3:4",
    "3:2",
    "2:3",
    "4:5",
    "5:4",
    "21:9",
    "9:21",
    "2:1",
    "1:2",
)
SEED_MAX = 2**32 - 1
SAFETY_MAX = 6
SAFETY_MAX_WITH_IMAGE = 2
DEFAULT_SAFETY = 2


@dataclass(frozen=True)
class EditOptions:
    """The options of the command grammar, already validated.

    ``aspect_ratio`` None means "the provider's default": match the input image when
    there is one, 1:1 for text-to-image.
    """

    aspect_ratio: str | None = None
    seed: int | None = None
    output_format: OutputFormat = "png"
    upsample: bool = False
    safety: int = DEFAULT_SAFETY
    # The named model (``--model NAME``, bot.credits.models); None: the default one. A stored
    # job carries the name it was made with, so a re-roll keeps it.
    model: str | None = None
    # ``--res MP``: the output's size in megapixels, for models that have one (FLUX.2);
    # None: the model's default.
    resolution: int | None = None
    # ``--n COUNT``: how many variations one request makes (issue 27); each becomes a
    # job of its own with count 1, so it is not stored with a job (``to_json``).
    count: int = 1
    # ``--upscale N``: an upscale job at this scale (the model is then an upscaler,
    # bot.credits.models); None: an edit.
    upscale: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "aspect_ratio": self.aspect_ratio,
            "seed": self.seed,
            "output_format": self.output_format,
            "upsample": self.upsample,
            "safety": self.safety,
        }
        if self.model is not None:
            data["model"] = self.model
        if self.resolution is not None:
            data["resolution"] = self.resolution
        if self.upscale is not None:
            data["upscale"] = self.upscale
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditOptions:
        return cls(
            aspect_ratio=data.get("aspect_ratio"),
            seed=data.get("seed"),
            output_format=data.get("output_format", "png"),
            upsample=bool(data.get("upsample", False)),
            safety=int(data.get("safety", DEFAULT_SAFETY)),
            model=data.get("model"),
            resolution=data.get("resolution"),
            upscale=data.get("upscale"),
        )


@dataclass(frozen=True)
class AttachmentSource:
    """What the adapter needs to fetch an attachment again after a restart.

    ``locator`` is adapter-defined (a URL, a file path, a platform file id); it must not
    carry a secret, because it is stored with the job.
    """

    name: str
    content_type: str | None
    size: int | None
    locator: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "content_type": self.content_type,
            "size": self.size,
            "locator": self.locator,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttachmentSource:
        return cls(
            name=str(data["name"]),
            content_type=data.get("content_type"),
            size=data.get("size"),
            locator=str(data["locator"]),
        )


@dataclass(frozen=True)
class Attachment:
    """An input image as the platform declared it, with the adapter's own fetcher.

    ``fetch`` receives the byte cap so that an adapter can stop reading early instead of
    holding an oversized upload in memory.
    """

    source: AttachmentSource
    fetch: Callable[[int], Awaitable[bytes]]


@dataclass(frozen=True)
class RequestContext:
    """Where a request comes from, as far as quotas care: the channel, and the roles the
    user holds there (Discord). Policies can be set per channel and per role."""

    channel: str | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class EditRequest:
    """One ``/kontext`` request, platform-neutral.

    ``reply_target`` is the adapter's own description of where to answer (channel,
    thread, interaction); it is stored with the job and given back to the adapter.
    ``idempotency_key`` comes from the platform's own ids, so a redelivered event
    maps onto the job it already created.
    """

    user: UserRef
    prompt: str
    options: EditOptions
    attachments: tuple[Attachment, ...]
    reply_target: Mapping[str, Any]
    idempotency_key: str
    context: RequestContext = field(default_factory=RequestContext)
    # Files beside the images that are no image and were left out; the acknowledgement
    # names them (issue 26).
    left_out: tuple[str, ...] = ()


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.RUNNING, JobState.DELIVERING})


@dataclass(frozen=True)
class Job:
    """A stored job as the runner and adapters see it."""

    id: str
    idempotency_key: str
    user: UserRef
    state: JobState
    prompt: str
    options: EditOptions
    attachments: tuple[AttachmentSource, ...]
    reply_target: Mapping[str, Any]
    cost: int
    provider: str
    model: str  # the provider's model id it was sent (or will be sent) with
    prediction_id: str | None = None
    submit_started: bool = False
    output_path: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    created_at: float = 0.0
    finished_at: float | None = None
    seed_used: int | None = None
    # What the output looked like when downloaded (content type, width, height); the
    # ``jobs.result`` column (bot/storage/schema.py).
    output_meta: Mapping[str, Any] = field(default_factory=dict)
    # The named model (bot.credits.models) whose cost was reserved; None for jobs from before
    # named models (the default one).
    model_name: str | None = None
    # Cancel was asked while it ran (bot.jobs.cancellation); the runner honours it.
    cancel_requested: bool = False
    # The language its request was answered in (bot.i18n); None: ``[i18n] default``.
    locale: str | None = None
    # Variations (``--n``, issue 27): the jobs of one request share a group id; each is
    # number ``group_index`` (1-based) of ``group_size``; None for a job alone.
    group_id: str | None = None
    group_index: int = 1
    group_size: int = 1
    # Where a finished member stands in its group's delivery (bot.jobs.queue.group_turn): "waiting"
    # for its siblings, "posting" the group, "posted"; None before.
    group_state: str | None = None

    @property
    def delivered(self) -> Mapping[str, Any] | None:
        """Where the result was posted, as the platform's reply said (``Reply.deliver``):
        its ids and a ``link`` where the platform has one; None before delivery, for a
        platform that says nothing, or once the post was deleted."""
        where = self.output_meta.get("delivered")
        return where if isinstance(where, Mapping) and where else None

    @property
    def request_key(self) -> str:
        """The idempotency key of the request that made the job: a variation beyond the
        first carries ``<key>#<index>`` (bot.service), the platform's own key is the
        first's, which is what a front end knows its answer by."""
        suffix = f"#{self.group_index}"
        if self.group_id is not None and self.group_index > 1:
            return self.idempotency_key.removesuffix(suffix)
        return self.idempotency_key

    @property
    def seed(self) -> int | None:
        """The seed that made (or will make) the image: the provider's word if it gave
        one, else the one the bot chose and sent."""
        return self.seed_used if self.seed_used is not None else self.options.seed


@dataclass(frozen=True)
class Acknowledgement:
    """What the adapter tells the user at once: the job and its place in the queue.
    For variations (``--n``), ``job`` is the first and ``group`` every one, in order."""

    job: Job
    queue_position: int
    balance_after: int
    duplicate: bool
    group: tuple[Job, ...] = ()

    @property
    def jobs(self) -> tuple[Job, ...]:
        return self.group or (self.job,)

    @property
    def total_cost(self) -> int:
        return sum(job.cost for job in self.jobs)


@dataclass(frozen=True)
class EditResult:
    """A finished image, ready to post."""

    job: Job
    image: bytes
    content_type: str
    filename: str
    width: int
    height: int
    balance_after: int
    elapsed_seconds: float


@dataclass(frozen=True)
class GroupMember:
    """One variation of a group as it is posted: its image (``result``), or why it
    failed (``failure``; its credits were refunded)."""

    job: Job
    result: EditResult | None = None
    failure: str | None = None


@dataclass(frozen=True)
class GroupResult:
    """Every variation of one request, in order, posted together once the last ends."""

    members: tuple[GroupMember, ...]
    balance_after: int
    elapsed_seconds: float

    @property
    def first(self) -> Job:
        return self.members[0].job

    @property
    def results(self) -> tuple[EditResult, ...]:
        return tuple(m.result for m in self.members if m.result is not None)

    @property
    def failed(self) -> tuple[GroupMember, ...]:
        return tuple(m for m in self.members if m.result is None)


class Reply(Protocol):
    """How the core talks back to the person who asked, on their platform.

    Implementations must be safe to call after a restart (built from the stored
    ``reply_target``) and should not raise for a lost conversation: log and return.
    """

    async def progress(self, job: Job, stage: str) -> None:
        """A status change worth showing (queued, editing)."""

    async def deliver(
        self, result: EditResult, *, maybe_delivered: bool = False
    ) -> Mapping[str, Any] | None:
        """Post the finished image; raising means "not delivered" and is retried.
        Returns where the image now is, for the user's history: plain data the core
        stores with the job (the platform's ids of the post, and ``link``, a URL
        people can open), or None when the platform has nothing to point to.

        ``maybe_delivered``: an earlier attempt may have posted it already (the process
        died after posting but before recording it, or an attempt raised after the
        platform took the post). A platform where a post is a new message should look
        for it first and not post it again; returning means "the image is there"."""

    async def deliver_group(
        self, group: GroupResult, *, maybe_delivered: bool = False
    ) -> Mapping[str, Mapping[str, Any]] | None:
        """Post every image of a group of variations in one message, naming those that
        failed (``--n``, issue 27); raising means "not delivered" and is retried, as
        ``deliver``. Returns where each image now is, by job id (what ``deliver``
        returns for one), or None."""

    async def fail(self, job: Job, message: str) -> None:
        """Tell the user the job failed and why, in plain words."""

    async def tell(self, text: str) -> None:
        """A word for the requester alone (ephemeral where the platform has it): the
        answer to their request, a refusal, a notice about a stored job."""
