"""Every answer the bot gives a person, written once for every platform.

The words are decided here; how they look is the platform's business, so each text is
built through a ``Style`` (bold, mentions, timestamps, code, and how user-provided text
is made safe to echo). Front ends used to write these texts out themselves, and the
copies drifted (Discord's help advertised Slack's syntax; allowance answers named the
config's period instead of the one in force).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.domain import Acknowledgement, Job, JobState
from bot.errors import ErrorKind, KontextError
from bot.job_reads import QUEUE_POSITION_CAP
from bot.ledger import LedgerEntry
from bot.limits import Limits
from bot.policies import Override

if TYPE_CHECKING:
    from bot.models import Catalogue
    from bot.service import CreditStatus

OPTIONS_HELP = """\
Options:
  --ar RATIO       aspect ratio: match_input_image (default with an image), 1:1, 16:9,
                   9:16, 4:3, 3:4, 3:2, 2:3, 4:5, 5:4, 21:9, 9:21, 2:1, 1:2
  --seed N         repeatable results (0-4294967295; the bot picks one if you don't)
  --format png|jpg output format (default png)
  --upsample       let the model expand a short prompt
  --safety N       moderation tolerance 0-6 (default 2; at most 2 with an image)"""


@dataclass(frozen=True)
class CommandNames:
    """How a platform's users ask for each thing: its help names only these."""

    usage: str
    examples: Sequence[str]
    info: Sequence[str]
    admin: Sequence[str] = ()
    text_options: bool = True


class Style:
    """Plain text (the terminal, the CLI); platforms override what they render
    differently. Methods, not data, so a platform can escape or look things up."""

    workspace_word = "workspace"
    commands = CommandNames(
        usage='kontext-bot console [--image PATH] "<what to change>" [options]',
        examples=(
            'kontext-bot console --image cat.png "make it a watercolor"',
            'kontext-bot console --image cat.png "now make her wave" --seed 42',
        ),
        info=(
            'kontext-bot console "credits"   your balance',
            "kontext-bot console history [USERREF]   your last 10 edits (admins: anyone's)",
        ),
    )

    def bold(self, text: str) -> str:
        return text

    def code(self, text: str) -> str:
        return text

    def user(self, user_id: str) -> str:
        return user_id

    def role(self, role_id: str) -> str:
        return f"role {role_id}"

    def channel(self, channel_id: str) -> str:
        return f"channel {channel_id}"

    def when(self, moment: datetime) -> str:
        return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"

    def echo(self, text: str) -> str:
        """User-provided text as it may be shown back (platforms escape mentions)."""
        return text

    def link(self, url: str, label: str) -> str:
        """A link people can open; plain text shows the address itself."""
        return url


class ChatStyle(Style):
    """What Slack and Discord write alike: backticks for code, ``<@id>`` for a person,
    ``<#id>`` for a channel."""

    def code(self, text: str) -> str:
        return f"`{text}`"

    def user(self, user_id: str) -> str:
        return f"<@{user_id}>"

    def channel(self, channel_id: str) -> str:
        return f"<#{channel_id}>"


def short(text: str, limit: int = 150) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def help_text(style: Style, cost_per_image: int, models: Catalogue | None = None) -> str:
    names = style.commands
    several = models is not None and models.several
    lines = [f"{names.usage}   edit the attached image (or make one from text)", ""]
    if names.text_options:
        lines += [OPTIONS_HELP + (MODEL_OPTION_HELP if several else ""), ""]
    lines += ["Examples:", *(f"  {example}" for example in names.examples), ""]
    lines += list(names.info)
    if names.admin:
        lines += ["Admins: " + ", ".join(names.admin)]
    if models is not None and models.several:
        lines += ["", models_text(models)]
    else:
        lines += ["", f"Each image costs {cost_per_image} credits."]
    return "\n".join(lines)


def welcome_text(style: Style, cost_per_image: int) -> str:
    """What the bot posts once when it joins a server (``discord.welcome``): what it
    does, how to ask for help, and the admins' first commands, as the best-loved bots
    greet a server (issue 29). Short: it lands in a channel everyone reads."""
    names = style.commands
    lines = [
        "Hi! I edit images with FLUX.1 Kontext: tell me what to change and attach a photo "
        f"(or none, to make one from text). Each image costs {cost_per_image} credits; "
        "everyone gets an allowance.",
        f"Try: {names.examples[0]}" if names.examples else "",
        # The help's own line says "this text"; here it points at the help.
        *(line.replace("   this text", "   how to use me, in full") for line in names.info),
    ]
    if names.admin:
        lines.append(
            "Admins (the bot's credits.admins): " + ", ".join(names.admin) + " to give credits, "
            "set allowances and pause me."
        )
    return "\n".join(line for line in lines if line)


# -- named models (bot.models): only mentioned when there is a choice ------------------

MODEL_OPTION_HELP = """
  --model NAME     which model makes the image (each has its own price)"""


def models_text(models: Catalogue) -> str:
    """The models and what an image of each costs."""
    return "Models: " + models.price_list() + "."


def models_allowed_text(style: Style, scope: str, models: Sequence[str]) -> str:
    """An admin's answer after allowing restricted models in a scope."""
    where = describe_scope(style, scope)
    if not models:
        return f"No restricted models are allowed for {where} now."
    return f"Restricted models allowed for {where}: {', '.join(models)}."


# -- end of named models ----------------------------------------------------------------


def credits_text(style: Style, status: CreditStatus) -> str:
    refill = (
        style.when(status.next_allowance_at)
        if status.next_allowance_at
        else "never (one-time allowance)"
    )
    running = f", {status.active_jobs} running" if status.active_jobs else ""
    text = (
        f"You have {style.bold(f'{status.balance} credits')}: {status.images_left} images at "
        f"{status.cost_per_image} each{running}. Next allowance of {status.allowance}: {refill}."
    )
    if status.models:
        default = next(m.name for m in status.models if m.default)
        prices = ", ".join(f"{m.name} {m.cost}" for m in status.models)
        text = text.replace(" images at ", f" {default} images at ", 1)
        text += f" Credits per image: {prices}."
    return text


def position_text(position: int) -> str:
    """A place in line; at the cap the count stops at (bot.job_reads), "1,000+"."""
    return f"{position:,}+" if position >= QUEUE_POSITION_CAP else str(position)


def queued_text(style: Style, ack: Acknowledgement) -> str:
    model = f", model {ack.job.model_name}" if ack.job.model_name else ""
    return (
        f"Queued (position {position_text(ack.queue_position)}{model}): {ack.job.cost} "
        f"credits reserved, {ack.balance_after} left. Seed {ack.job.options.seed}."
    )


def describe_scope(style: Style, scope: str) -> str:
    kind, _, _, ident = [*scope.split(":"), "", "", ""][:4]
    if kind == "user":
        return style.user(scope.split(":")[-1])
    if kind == "role":
        return style.role(ident)
    if kind == "channel":
        return style.channel(ident)
    if kind == "global":
        return "everyone"
    return f"this {style.workspace_word}"


def allowance_text(style: Style, scope: str, override: Override, limits: Limits) -> str:
    """The period shown is the override's own, else the one in force for everyone (the
    config as changed at run time), never the config file's."""
    who = describe_scope(style, scope)
    if override.allowance is None:
        return f"{who[:1].upper()}{who[1:]} has no allowance override now."
    return f"Allowance for {who}: {override.allowance} credits {override.period or limits.period}."


def pause_text(style: Style, scope: str, paused: bool) -> str:
    where = describe_scope(style, scope)
    if paused:
        return (
            f"Paused: the bot is paused in {where}; new edits are refused until an admin resumes."
        )
    return f"Resumed: taking edits again in {where}."


def grant_text(style: Style, user_id: str, balance: int) -> str:
    return f"{style.user(user_id)} now has {balance} credits."


def ledger_text(style: Style, user_id: str, entries: Iterable[LedgerEntry]) -> str:
    lines = [
        f"{style.code(f'#{e.id}')} {e.kind.value} {e.amount:+d}"
        + (f" · job {style.code(e.job_id[:8])}" if e.job_id else "")
        + (f" · {style.echo(e.note)}" if e.note else "")
        for e in entries
    ]
    return f"Recent credits of {style.user(user_id)}:\n" + ("\n".join(lines) or "No entries yet.")


def top_spenders_text(style: Style, rows: Iterable[tuple[str, int]]) -> str:
    lines = [
        f"{n}. {style.user(ref.split(':')[-1])} {spent}" for n, (ref, spent) in enumerate(rows, 1)
    ]
    return "Top spenders this period:\n" + ("\n".join(lines) or "Nobody yet.")


def limits_text(limits: Limits, budget_period: str | None = None) -> str:
    """The limits in force; ``budget_period``: ``credits.budget_period`` when set."""
    return (
        f"allowance {limits.allowance} {limits.period}; max_balance {limits.max_balance}; "
        f"budget {limits.budget} per {budget_period or limits.period}; "
        f"cooldown {limits.cooldown_seconds:g} s "
        f"(0: none); jobs per user at once {limits.per_user_concurrent}"
    )


def policy_text(scope: str, override: Override | None, limits: Limits) -> str:
    """The CLI's one-line answer about a scope."""
    if override is None or (
        override.allowance is None and not override.paused and override.models is None
    ):
        return f"{scope}: no override (the config's allowance applies)"
    allowance = (
        f"{override.allowance} {override.period or limits.period}"
        if override.allowance is not None
        else "the config's"
    )
    models = (
        f"; models {', '.join(override.models) or 'none'}" if override.models is not None else ""
    )
    return f"{scope}: allowance {allowance}; {'PAUSED' if override.paused else 'active'}{models}"


# What a demo result says first (provider.name = "demo", bot.providers.demo): it is
# free at any image service and not a FLUX edit, so nobody mistakes it for one.
DEMO_NOTE = "demo provider: an offline Pillow look, not FLUX"


def provider_note(provider: str) -> str | None:
    """The word a result carries about the provider that made it, when it needs one."""
    return DEMO_NOTE if provider == "demo" else None


def result_details(
    seed: int | None, cost: int, balance_after: int, *, provider: str = ""
) -> list[str]:
    """What every posted result says besides the image: the seed to reproduce it, and
    what it cost; first, for a demo result, that it is one."""
    note = provider_note(provider)
    return [
        *([note] if note else []),
        f"seed {seed if seed is not None else 'unknown'}",
        f"{cost} credits",
        f"{balance_after} left",
    ]


# -- a platform that asks the bot to slow down (issue 24) ----------------------------------

_PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord", "console": "the console"}


def platform_name(platform: str) -> str:
    return _PLATFORM_NAMES.get(platform, platform)


def waiting_for_platform(platform: str) -> str:
    """The status of a finished image the platform's rate limit holds back; also what
    the dashboard's jobs page says of it."""
    return f"done; waiting for {platform_name(platform)} to accept the post"


def rate_limited_too_long(platform: str, seconds: float) -> str:
    return (
        f"{platform_name(platform)} kept asking the bot to slow down for "
        f"{seconds / 60:.0f} minutes, so the edited image could not be posted."
    )


def failure_message(exc: KontextError, job_id: str) -> str:
    """What the user reads when a job fails after its credits were reserved."""
    refunded = "Your credits were refunded."
    if exc.kind == ErrorKind.INTERNAL:
        return (
            f"Something went wrong on the bot's side (job {job_id}). {refunded} "
            "An operator can look the job up in the logs."
        )
    return f"{exc.user_message} {refunded}"


# -- history (issue 19): a user's recent jobs ------------------------------------------------


def job_model(job: Job) -> str:
    """The model a job names in history: the name people typed (``--model NAME``) where
    the install has named models, else the provider's model id stored with the job."""
    return job.model_name or job.model


def job_outcome(job: Job) -> tuple[str, str]:
    """What became of a job and what it cost, in words."""
    if job.state == JobState.SUCCEEDED:
        return "delivered", f"{job.cost} credits"
    if job.state in (JobState.FAILED, JobState.CANCELED):
        why = f": {job.error_kind.replace('_', ' ')}" if job.error_kind else ""
        return f"{job.state.value}{why}", "refunded"
    return "in progress", f"{job.cost} reserved"


def history_text(
    style: Style, user_id: str, jobs: Sequence[Job], *, own: bool, numbered: Sequence[str] = ()
) -> str:
    """One line per job, newest first: when, the prompt (shortened), model, seed, outcome,
    cost, and a link to the posted result where the platform gave one. ``numbered``: the
    ids of the jobs that carry buttons, marked 1, 2, ... as the buttons are."""
    whose = "Your" if own else f"{style.user(user_id)}'s"
    if not jobs:
        return "You have no edits yet." if own else f"{style.user(user_id)} has no edits yet."
    lines = [f"{whose} last {len(jobs)} edit{'s' if len(jobs) != 1 else ''}:"]
    for job in jobs:
        outcome, cost = job_outcome(job)
        mark = f"{style.bold(f'#{numbered.index(job.id) + 1}')} " if job.id in numbered else ""
        when = style.when(datetime.fromtimestamp(job.created_at, UTC))
        parts = [
            f"{mark}{when}",
            style.code(style.echo(short(job.prompt, 60).replace("`", "'"))),
            job_model(job),
            f"seed {job.seed if job.seed is not None else 'unknown'}",
            outcome,
            cost,
        ]
        where = job.delivered
        if where and where.get("link"):
            parts.append(style.link(str(where["link"]), "result"))
        lines.append(" · ".join(parts))
    return "\n".join(lines)


# -- what a result's buttons answer when they cannot do their part (bot.conversation) ------

REROLL_GONE = "I no longer have that edit's details, so I can't re-roll it."
RESULT_IMAGE_GONE = "That result's image is gone, so there is nothing to edit."
DELETE_NOT_YOURS = "Only the person who asked for this image or an admin can delete it."
