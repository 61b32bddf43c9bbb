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

from bot.cancel_answers import CancelAnswer, Outcome
from bot.domain import Acknowledgement, Job, JobState
from bot.errors import ErrorKind, KontextError
from bot.job_reads import QUEUE_POSITION_CAP
from bot.ledger import LedgerEntry
from bot.limits import Limits
from bot.policies import Override

if TYPE_CHECKING:
    from bot.credit_status import BudgetStatus, CreditStatus
    from bot.model_profiles import ModelProfile
    from bot.models import Catalogue, Model

OPTIONS_HELP = """\
Options:
  --ar RATIO       aspect ratio: match_input_image (default with an image), 1:1, 16:9,
                   9:16, 4:3, 3:4, 3:2, 2:3, 4:5, 5:4, 21:9, 9:21, 2:1, 1:2
  --seed N         repeatable results (0-4294967295; the bot picks one if you don't)
  --format png|jpg output format (default png)
  --upsample       let the model expand a short prompt
  --safety N       moderation tolerance 0-6 (default 2; at most 2 with an image)"""

# Said once, in the help: what several images mean (issue 26).
SEVERAL_IMAGES_HELP = (
    "Several images: the first is the one edited, the others are references your prompt "
    'can name ("put the hat from image 2 on the cat").'
)
RES_OPTION_HELP = """
  --res MP         output size in megapixels (1, 2 or 4), for models that have one"""


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
    multi = models is not None and models.max_images > 1
    if names.text_options:
        res = models is not None and any(m.main_profile.resolutions for m in models.models)
        lines += [
            OPTIONS_HELP
            + (RES_OPTION_HELP if res else "")
            + (MODEL_OPTION_HELP if several else ""),
            "",
        ]
    if multi:
        lines += [SEVERAL_IMAGES_HELP, ""]
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
    """The models, what an image of each costs and what each takes."""
    lines = ["Models: " + models.price_list() + "."]
    if any(m.main_profile != models.default.main_profile for m in models.models):
        lines += [
            f"  {m.name}: {model_inputs(m.main_profile, m.extra_cost)}" for m in models.models
        ]
    return "\n".join(lines)


def model_inputs(profile: ModelProfile, extra_cost: int = 0) -> str:
    """``up to 8 images (+10 credits each beyond the first); --ar ...; --safety 1-5; ...``"""
    images = f"up to {profile.max_images} images" if profile.max_images > 1 else "1 image"
    if extra_cost and profile.max_images > 1:
        images += f" (+{extra_cost} credits each beyond the first)"
    parts = [
        images,
        "--ar " + " ".join(profile.aspect_ratios),
        f"--safety {profile.safety_min}-{profile.safety_max}"
        + (
            f" (at most {profile.safety_max_with_image} with an image)"
            if profile.safety_max_with_image is not None
            else ""
        ),
        "--format " + "|".join(profile.output_formats),
    ]
    if profile.resolutions:
        parts.append("--res " + "|".join(str(r) for r in profile.resolutions))
    return "; ".join(parts)


def with_model(name: str | None) -> str:
    """`` with flux2`` inside a refusal when there is a choice of model, else nothing."""
    return f" with {name}" if name else ""


def safety_range(model: str | None, low: int, high: int) -> str:
    return f"--safety must be from {low} (strictest) to {high}{with_model(model)}."


def res_refused(model: str | None, asked: int, allowed: Sequence[int]) -> str:
    if not allowed:
        return (
            f"--res is not something {model or 'this model'} takes; leave it out"
            " (nothing was charged)."
        )
    choices = ", ".join(str(r) for r in allowed)
    return (
        f"--res {asked} is not a size I can make{with_model(model)}; "
        f"use one of: {choices} (megapixels)."
    )


def res_not_a_number(raw: str) -> str:
    return f"--res must be the megapixels as a whole number, e.g. --res 2; '{raw}' is not."


def too_many_images(model: str, limit: int, given: int, other: Model | None) -> str:
    """More images than the chosen model takes: free, naming the limit and a model that
    takes that many, when one is configured."""
    text = f"{model} takes at most {limit} image{'s' if limit != 1 else ''}; you gave {given}."
    if other is not None:
        text += f" {other.name} takes up to {other.max_images}: add --model {other.name}."
    else:
        text += f" Send at most {limit}."
    return text + " Nothing was charged."


def left_out_note(names: Sequence[str]) -> str:
    """The acknowledgement's word about files beside the images that are no image."""
    shown = ", ".join(f"'{n}'" for n in names[:3]) + (" …" if len(names) > 3 else "")
    return f" Left out (not an image): {shown}."


def inputs_too_large(total: int, limit: int) -> str:
    return (
        f"Together the images are {total / 1e6:.1f} MB; the limit for one edit is "
        f"{limit / 1e6:.0f} MB. Send fewer or smaller images; nothing was charged."
    )


NO_PROVIDER_TAKES = (
    "No configured image service takes this edit as asked (its images or options). "
    "Nothing was charged."
)


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
    count = len(ack.job.attachments)
    images = f", {count} images" if count > 1 else ""
    return (
        f"Queued (position {position_text(ack.queue_position)}{model}{images}): {ack.job.cost} "
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


def job_line(style: Style, job: Job, mark: str = "") -> str:
    """One job as history shows it: when, the prompt (shortened), model, seed, outcome,
    cost, and a link to the posted result where the platform gave one."""
    outcome, cost = job_outcome(job)
    when = style.when(datetime.fromtimestamp(job.created_at, UTC))
    parts = [
        f"{mark}{when}",
        style.code(style.echo(short(job.prompt, 60).replace("`", "'"))),
        job_model(job),
        *([f"{len(job.attachments)} images"] if len(job.attachments) > 1 else []),
        f"seed {job.seed if job.seed is not None else 'unknown'}",
        outcome,
        cost,
    ]
    where = job.delivered
    if where and where.get("link"):
        parts.append(style.link(str(where["link"]), "result"))
    return " · ".join(parts)


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
        mark = f"{style.bold(f'#{numbered.index(job.id) + 1}')} " if job.id in numbered else ""
        lines.append(job_line(style, job, mark))
    return "\n".join(lines)


# -- the App Home (Slack's Home tab; bot.home) ---------------------------------------------

HOME_TITLE = "Kontext: edit images with FLUX"
HOME_EDITS_TITLE = "Your last edits"
HOME_NEW_EDIT = "New edit"
HOME_REROLL = "Re-roll"
HOME_EDIT_AGAIN = "Edit again"
HOME_ADMIN_TITLE = "Shared budget (admins only)"
HOME_DASHBOARD = "Open the dashboard"
HOME_THUMBNAIL = "The edited image"
HOME_CHANNEL_LABEL = "Post the result in"
HOME_CHOOSE_CHANNEL = "Choose the channel the result goes to."


def result_goes_to(style: Style, channel_id: str) -> str:
    """Said with a request started from the home screen, which is in no channel."""
    return f"The result will be posted in {style.channel(channel_id)}."


def home_empty_text(style: Style, cost_per_image: int) -> str:
    """The Home tab of someone who has not edited anything yet."""
    return (
        f"You have no edits yet. Press {style.bold(HOME_NEW_EDIT)} to make your first one: "
        "attach an image (or none, to make one from words), say what should change and "
        f"choose the channel the result goes to. An image costs {cost_per_image} credits."
    )


def budget_text(style: Style, budget: BudgetStatus) -> str:
    """The shared budget's use and today's spend, for admins."""
    period = f"this {budget.period} period" if budget.period != "never" else "in all"
    if budget.budget:
        left = max(0, budget.budget - budget.spent_in_period)
        used = (
            f"{style.bold(f'{budget.spent_in_period:,} of {budget.budget:,} credits')} spent "
            f"{period}, {left:,} left."
        )
    else:
        used = (
            f"No shared budget (credits.budget is 0): {budget.spent_in_period:,} credits "
            f"spent {period}."
        )
    return f"{used} Today (UTC): {budget.spent_today:,} credits spent."


# -- what a result's buttons answer when they cannot do their part (bot.conversation) ------

REROLL_GONE = "I no longer have that edit's details, so I can't re-roll it."
RESULT_IMAGE_GONE = "That result's image is gone, so there is nothing to edit."
DELETE_NOT_YOURS = "Only the person who asked for this image or an admin can delete it."
# -- cancel (bot.cancellation) ------------------------------------------------------------

CANCELED_QUEUED = "Canceled before it started."
CANCELED_AT_PROVIDER = "Canceled at the image service."


def cancel_text(answer: CancelAnswer) -> str:
    """The answer to the one who asked to cancel."""
    job = answer.job
    short_id = job.id[:8] if job is not None else ""
    outcome = answer.outcome
    if outcome == Outcome.CANCELED:
        return (
            f"Canceled job {short_id} before it started: {job.cost if job else 0} credits "
            f"refunded, {answer.balance} left."
        )
    if outcome == Outcome.ASKED:
        return (
            f"Asked the image service to stop job {short_id}. Its credits are refunded once "
            "it has stopped; if the image is already done, it is posted and charged."
        )
    if outcome == Outcome.ALREADY_ASKED:
        return f"Job {short_id} is already being canceled."
    if outcome == Outcome.CANNOT:
        return (
            f"Job {short_id} cannot be canceled: this image service has no way to stop an "
            "edit once it started. It goes on and is posted when done."
        )
    if outcome == Outcome.FINISHED:
        return f"Job {short_id} has already finished; there is nothing to cancel."
    if outcome == Outcome.NOT_YOURS:
        return "Only the person who asked for this edit, or an admin, can cancel it."
    return "You have no edit in progress to cancel."


def withdrawn_text(balance: int) -> str:
    """Told to the requester when their queued job was canceled."""
    return f"Canceled before it started: its credits were refunded, {balance} left."


def canceled_text(balance: int | None) -> str:
    """Told to the requester when a running job was stopped and refunded."""
    left = f", {balance} left" if balance is not None else ""
    return f"Canceled as asked: the edit was stopped and its credits refunded{left}."


CANCEL_TOO_LATE = (
    "The edit finished before it could be stopped, so it was posted and charged as usual."
)
