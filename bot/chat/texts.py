"""Every answer the bot gives a person, written once for every platform.

The words are decided here; how they look is the platform's business, so each text is
built through a ``Style`` (bold, mentions, timestamps, code, and how user-provided text
is made safe to echo). Front ends used to write these texts out themselves, and the
copies drifted (Discord's help advertised Slack's syntax; allowance answers named the
config's period instead of the one in force).

Every text is translatable (bot.i18n): ``_()`` around a sentence, ``ngettext`` where a
count decides the form, and module-level texts marked ``N_()`` and translated where they
are used. Placeholders are named (``{balance}``), so a translation may put them in its
own order; a command word, an option (``--seed``) or a model name stays as users type it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.chat.cancel_answers import CancelAnswer, Outcome
from bot.credits.ledger import LedgerEntry
from bot.credits.limits import Limits
from bot.credits.policies import Override
from bot.domain import Acknowledgement, GroupMember, GroupResult, Job, JobState
from bot.errors import ErrorKind, KontextError
from bot.i18n import N_, _, display_name, ngettext, number, pgettext
from bot.i18n import when as plain_when
from bot.jobs.reads import QUEUE_POSITION_CAP

if TYPE_CHECKING:
    from bot.chat.credit_status import BudgetStatus, CreditStatus
    from bot.credits.model_profiles import ModelProfile
    from bot.credits.models import Catalogue, Model

OPTIONS_HELP = N_("""\
Options:
  --ar RATIO       aspect ratio: match_input_image (default with an image), 1:1, 16:9,
                   9:16, 4:3, 3:4, 3:2, 2:3, 4:5, 5:4, 21:9, 9:21, 2:1, 1:2
  --seed N         repeatable results (0-4294967295; the bot picks one if you don't)
  --format png|jpg output format (default png)
  --upsample       let the model expand a short prompt
  --safety N       moderation tolerance 0-6 (default 2; at most 2 with an image)""")

# Said once, in the help: what several images mean (issue 26).
SEVERAL_IMAGES_HELP = N_(
    "Several images: the first is the one edited, the others are references your prompt "
    'can name ("put the hat from image 2 on the cat").'
)
# ``--n COUNT`` (issue 27), shown when the operator allows more than one.
COUNT_OPTION_HELP = N_(
    "\n  --n COUNT        that many variations, each its own seed and charged on its own (1-{most})"
)

RES_OPTION_HELP = N_("""
  --res MP         output size in megapixels (1, 2 or 4), for models that have one""")


@dataclass(frozen=True)
class CommandNames:
    """How a platform's users ask for each thing: its help names only these. Each line
    is marked ``N_()`` where the platform writes it and translated in the help."""

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
        usage=N_('kontext-bot console [--image PATH] "<what to change>" [options]'),
        examples=(
            'kontext-bot console --image cat.png "make it a watercolor"',
            'kontext-bot console --image cat.png "now make her wave" --seed 42',
        ),
        info=(
            N_('kontext-bot console "credits"   your balance'),
            N_("kontext-bot console history [USERREF]   your last 10 edits (admins: anyone's)"),
        ),
    )

    def bold(self, text: str) -> str:
        return text

    def code(self, text: str) -> str:
        return text

    def user(self, user_id: str) -> str:
        return user_id

    def role(self, role_id: str) -> str:
        return _("role {role}").format(role=role_id)

    def channel(self, channel_id: str) -> str:
        return _("channel {channel}").format(channel=channel_id)

    def when(self, moment: datetime) -> str:
        return plain_when(moment)

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


def help_text(
    style: Style,
    cost_per_image: int,
    models: Catalogue | None = None,
    presets: Sequence[str] = (),
    max_variations: int = 1,
) -> str:
    """``presets``: the names of the presets in force, listed after the options (what
    each does is in docs/presets.md; the help stays within Discord's 2,000 characters)."""
    names = style.commands
    several = models is not None and models.several
    lines = [
        _("{usage}   edit the attached image (or make one from text)").format(usage=_(names.usage)),
        "",
    ]
    multi = models is not None and models.max_images > 1
    if names.text_options:
        res = models is not None and any(m.main_profile.resolutions for m in models.models)
        lines += [
            _(OPTIONS_HELP)
            + (_(COUNT_OPTION_HELP).format(most=max_variations) if max_variations > 1 else "")
            + (_(RES_OPTION_HELP) if res else "")
            + (_(MODEL_OPTION_HELP) if several else "")
            + upscale_help(models),
            "",
        ]
    if multi:
        lines += [_(SEVERAL_IMAGES_HELP), ""]
    if presets:
        lines += [
            _("Presets (--preset NAME, or a result's buttons): {names}").format(
                names=", ".join(presets)
            ),
            "",
        ]
    lines += [_("Examples:"), *(f"  {_(example)}" for example in names.examples), ""]
    lines += [_(line) for line in names.info]
    if names.admin:
        lines += [_("Admins: {commands}").format(commands=", ".join(names.admin))]
    if models is not None and models.several:
        lines += ["", models_text(models)]
    else:
        lines += [
            "",
            ngettext(
                "Each image costs {cost} credit.",
                "Each image costs {cost} credits.",
                cost_per_image,
            ).format(cost=cost_per_image),
        ]
    return "\n".join(lines)


def welcome_text(style: Style, cost_per_image: int) -> str:
    """What the bot posts once when it joins a server (``discord.welcome``): what it
    does, how to ask for help, and the admins' first commands, as the best-loved bots
    greet a server (issue 29). Short: it lands in a channel everyone reads."""
    names = style.commands
    lines = [
        ngettext(
            "Hi! I edit images with FLUX.1 Kontext: tell me what to change and attach a photo "
            "(or none, to make one from text). Each image costs {cost} credit; "
            "everyone gets an allowance.",
            "Hi! I edit images with FLUX.1 Kontext: tell me what to change and attach a photo "
            "(or none, to make one from text). Each image costs {cost} credits; "
            "everyone gets an allowance.",
            cost_per_image,
        ).format(cost=cost_per_image),
        _("Try: {example}").format(example=_(names.examples[0])) if names.examples else "",
        # The help's own line says "this text"; here it points at the help.
        *(
            _("{command}   how to use me, in full").format(command=line.split("   ")[0])
            if line.endswith("   this text")
            else _(line)
            for line in names.info
        ),
    ]
    if names.admin:
        lines.append(
            _(
                "Admins (the bot's credits.admins): {commands} to give credits, "
                "set allowances and pause me."
            ).format(commands=", ".join(names.admin))
        )
    return "\n".join(line for line in lines if line)


# -- named models (bot.credits.models): only mentioned when there is a choice ------------------

MODEL_OPTION_HELP = N_("""
  --model NAME     which model makes the image (each has its own price)""")


def models_text(models: Catalogue) -> str:
    """The models, what an image of each costs and what each takes."""
    lines = [_("Models: {prices}.").format(prices=models.price_list())]
    if any(m.main_profile != models.default.main_profile for m in models.models):
        lines += [
            f"  {m.name}: {model_inputs(m.main_profile, m.extra_cost)}" for m in models.models
        ]
    return "\n".join(lines)


def model_inputs(profile: ModelProfile, extra_cost: int = 0) -> str:
    """``up to 8 images (+10 credits each beyond the first); --ar ...; --safety 1-5; ...``"""
    images = ngettext("up to {n} image", "up to {n} images", profile.max_images).format(
        n=profile.max_images
    )
    if profile.max_images <= 1:
        images = _("1 image")
    if extra_cost and profile.max_images > 1:
        images += ngettext(
            " (+{cost} credit each beyond the first)",
            " (+{cost} credits each beyond the first)",
            extra_cost,
        ).format(cost=extra_cost)
    parts = [
        images,
        "--ar " + " ".join(profile.aspect_ratios),
        f"--safety {profile.safety_min}-{profile.safety_max}"
        + (
            _(" (at most {safety} with an image)").format(safety=profile.safety_max_with_image)
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
    return _(" with {model}").format(model=name) if name else ""


def safety_range(model: str | None, low: int, high: int) -> str:
    return _("--safety must be from {low} (strictest) to {high}{with_model}.").format(
        low=low, high=high, with_model=with_model(model)
    )


def res_refused(model: str | None, asked: int, allowed: Sequence[int]) -> str:
    if not allowed:
        if model is None:
            return _("--res is not something this model takes; leave it out (nothing was charged).")
        return _(
            "--res is not something {model} takes; leave it out (nothing was charged)."
        ).format(model=model)
    choices = ", ".join(str(r) for r in allowed)
    return _(
        "--res {asked} is not a size I can make{with_model}; use one of: {choices} (megapixels)."
    ).format(asked=asked, with_model=with_model(model), choices=choices)


def res_not_a_number(raw: str) -> str:
    return _(
        "--res must be the megapixels as a whole number, e.g. --res 2; '{raw}' is not."
    ).format(raw=raw)


def too_many_images(model: str, limit: int, given: int, other: Model | None) -> str:
    """More images than the chosen model takes: free, naming the limit and a model that
    takes that many, when one is configured."""
    text = ngettext(
        "{model} takes at most {limit} image; you gave {given}.",
        "{model} takes at most {limit} images; you gave {given}.",
        limit,
    ).format(model=model, limit=limit, given=given)
    if other is not None:
        text += " " + _("{other} takes up to {most}: add --model {other}.").format(
            other=other.name, most=other.max_images
        )
    else:
        text += " " + _("Send at most {limit}.").format(limit=limit)
    return text + " " + _("Nothing was charged.")


def left_out_note(names: Sequence[str]) -> str:
    """The acknowledgement's word about files beside the images that are no image."""
    shown = ", ".join(f"'{n}'" for n in names[:3]) + (" …" if len(names) > 3 else "")
    return " " + _("Left out (not an image): {names}.").format(names=shown)


def inputs_too_large(total: int, limit: int) -> str:
    return _(
        "Together the images are {total} MB; the limit for one edit is "
        "{limit} MB. Send fewer or smaller images; nothing was charged."
    ).format(total=number(total / 1e6, "0.0"), limit=number(round(limit / 1e6), "0"))


NO_PROVIDER_TAKES = N_(
    "No configured image service takes this edit as asked (its images or options). "
    "Nothing was charged."
)


def models_allowed_text(style: Style, scope: str, models: Sequence[str]) -> str:
    """An admin's answer after allowing restricted models in a scope."""
    where = describe_scope(style, scope)
    if not models:
        return _("No restricted models are allowed for {where} now.").format(where=where)
    return _("Restricted models allowed for {where}: {models}.").format(
        where=where, models=", ".join(models)
    )


# -- end of named models ----------------------------------------------------------------


def credits_text(style: Style, status: CreditStatus) -> str:
    refill = (
        style.when(status.next_allowance_at)
        if status.next_allowance_at
        else _("never (one-time allowance)")
    )
    running = _(", {count} running").format(count=status.active_jobs) if status.active_jobs else ""
    balance = style.bold(
        ngettext("{n} credit", "{n} credits", status.balance).format(n=status.balance)
    )
    left, cost = status.images_left, status.cost_per_image
    default = next((m.name for m in status.models if m.default), None) if status.models else None
    if default is None:
        images = ngettext("{n} image at {cost} each", "{n} images at {cost} each", left).format(
            n=left, cost=cost
        )
    else:
        images = ngettext(
            "{n} {model} image at {cost} each", "{n} {model} images at {cost} each", left
        ).format(n=left, model=default, cost=cost)
    text = _(
        "You have {balance}: {images}{running}. Next allowance of {allowance}: {refill}."
    ).format(
        balance=balance, images=images, running=running, allowance=status.allowance, refill=refill
    )
    if status.models:
        prices = ", ".join(f"{m.name} {m.cost}" for m in status.models)
        text += " " + _("Credits per image: {prices}.").format(prices=prices)
    return text


def position_text(position: int) -> str:
    """A place in line; at the cap the count stops at (bot.jobs.reads), "1,000+"."""
    return f"{number(position)}+" if position >= QUEUE_POSITION_CAP else str(position)


def queued_text(style: Style, ack: Acknowledgement) -> str:
    model = _(", model {model}").format(model=ack.job.model_name) if ack.job.model_name else ""
    count = len(ack.job.attachments)
    images = ngettext(", {n} image", ", {n} images", count).format(n=count) if count > 1 else ""
    if len(ack.jobs) > 1:
        # The total first: each variation is charged on its own (issue 27).
        return _(
            "Queued {count} variations (position {position}{model}{images}): {total} credits "
            "reserved ({count} x {cost}), {left} left. Seeds {seeds}. Each is charged only "
            "if it succeeds; they are posted together when the last one ends."
        ).format(
            count=len(ack.jobs),
            position=position_text(ack.queue_position),
            model=model,
            images=images,
            total=ack.total_cost,
            cost=ack.job.cost,
            left=ack.balance_after,
            seeds=", ".join(str(job.options.seed) for job in ack.jobs),
        )
    return ngettext(
        "Queued (position {position}{model}{images}): {cost} credit reserved, "
        "{left} left. Seed {seed}.",
        "Queued (position {position}{model}{images}): {cost} credits reserved, "
        "{left} left. Seed {seed}.",
        ack.job.cost,
    ).format(
        position=position_text(ack.queue_position),
        model=model,
        images=images,
        cost=ack.job.cost,
        left=ack.balance_after,
        seed=ack.job.options.seed,
    )


def describe_scope(style: Style, scope: str) -> str:
    kind, _platform, _workspace, ident = [*scope.split(":"), "", "", ""][:4]
    if kind == "user":
        return style.user(scope.split(":")[-1])
    if kind == "role":
        return style.role(ident)
    if kind == "channel":
        return style.channel(ident)
    if kind == "global":
        return _("everyone")
    return _("this server") if style.workspace_word == "server" else _("this workspace")


def allowance_text(style: Style, scope: str, override: Override, limits: Limits) -> str:
    """The period shown is the override's own, else the one in force for everyone (the
    config as changed at run time), never the config file's."""
    who = describe_scope(style, scope)
    if override.allowance is None:
        text = _("{who} has no allowance override now.").format(who=who)
        return text[:1].upper() + text[1:]
    return ngettext(
        "Allowance for {who}: {amount} credit {period}.",
        "Allowance for {who}: {amount} credits {period}.",
        override.allowance,
    ).format(
        who=who, amount=override.allowance, period=period_word(override.period or limits.period)
    )


def period_word(period: str) -> str:
    """A period as said in a sentence (``daily``); the config's word where it has no other."""
    words = {
        "daily": pgettext("period", "daily"),
        "weekly": pgettext("period", "weekly"),
        "monthly": pgettext("period", "monthly"),
        "never": pgettext("period", "never"),
    }
    return words.get(period, period)


def pause_text(style: Style, scope: str, paused: bool) -> str:
    where = describe_scope(style, scope)
    if paused:
        return _(
            "Paused: the bot is paused in {where}; new edits are refused until an admin resumes."
        ).format(where=where)
    return _("Resumed: taking edits again in {where}.").format(where=where)


def language_text(style: Style, scope: str, language: str | None) -> str:
    """An admin's answer after setting the language of a server or workspace."""
    where = describe_scope(style, scope)
    if language is None:
        return _(
            "Each person in {where} now gets answers in their own language "
            "(as their app is set), else in the bot's default."
        ).format(where=where)
    text = _("I now answer in {language} in {where}.").format(
        language=language_name(language), where=where
    )
    return text[:1].upper() + text[1:]


def language_name(code: str) -> str:
    """A language by its own name (한국어, Deutsch), as people pick it from a list."""
    return display_name(code)


def grant_text(style: Style, user_id: str, balance: int) -> str:
    return ngettext(
        "{user} now has {balance} credit.", "{user} now has {balance} credits.", balance
    ).format(user=style.user(user_id), balance=balance)


def ledger_text(style: Style, user_id: str, entries: Iterable[LedgerEntry]) -> str:
    lines = [
        f"{style.code(f'#{e.id}')} {e.kind.value} {e.amount:+d}"
        + (" · " + _("job {job}").format(job=style.code(e.job_id[:8])) if e.job_id else "")
        + (f" · {style.echo(e.note)}" if e.note else "")
        for e in entries
    ]
    return (
        _("Recent credits of {user}:").format(user=style.user(user_id))
        + "\n"
        + ("\n".join(lines) or _("No entries yet."))
    )


def top_spenders_text(style: Style, rows: Iterable[tuple[str, int]]) -> str:
    lines = [
        f"{n}. {style.user(ref.split(':')[-1])} {spent}" for n, (ref, spent) in enumerate(rows, 1)
    ]
    return _("Top spenders this period:") + "\n" + ("\n".join(lines) or _("Nobody yet."))


# The operator's CLI answers (limits, policy) stay in English, as the dashboard does:
# they are for the operator and name config keys.
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
DEMO_NOTE = N_("demo provider: an offline Pillow look, not FLUX")


def provider_note(provider: str) -> str | None:
    """The word a result carries about the provider that made it, when it needs one."""
    return _(DEMO_NOTE) if provider == "demo" else None


def result_details(
    seed: int | None, cost: int, balance_after: int, *, provider: str = ""
) -> list[str]:
    """What every posted result says besides the image: the seed to reproduce it, and
    what it cost; first, for a demo result, that it is one."""
    note = provider_note(provider)
    return [
        *([note] if note else []),
        seed_text(seed),
        ngettext("{n} credit", "{n} credits", cost).format(n=cost),
        _("{n} left").format(n=balance_after),
    ]


def seed_text(seed: int | None) -> str:
    return _("seed {seed}").format(seed=seed) if seed is not None else _("seed unknown")


def channel_unreachable(bot_name: str, images: int = 1) -> str:
    """Slack: the channel is closed to the bot (removed, archived), so the result (or a
    group's ``images``) could not be posted; the credits come back."""
    return ngettext(
        "I can't post in that channel any more (I was removed from it, or it was "
        "archived), so the edited image could not be delivered. To use me there, "
        "invite me back with `/invite @{bot}`.",
        "I can't post in that channel any more (I was removed from it, or it was "
        "archived), so the edited images could not be delivered. To use me there, "
        "invite me back with `/invite @{bot}`.",
        images,
    ).format(bot=bot_name)


# -- a platform that asks the bot to slow down (issue 24) ----------------------------------

_PLATFORM_NAMES = {"slack": "Slack", "discord": "Discord", "console": N_("the console")}


def platform_name(platform: str) -> str:
    return _(_PLATFORM_NAMES.get(platform, platform))


def waiting_for_platform(platform: str) -> str:
    """The status of a finished image the platform's rate limit holds back; also what
    the dashboard's jobs page says of it."""
    return _("done; waiting for {platform} to accept the post").format(
        platform=platform_name(platform)
    )


def cannot_see_channel(channel: str) -> str:
    """Discord: the bot has no access to the channel of a result (``channel``: its
    mention); the permissions keep the names Discord's settings show in English."""
    return _(
        "I can't post in {channel}: I don't have access to that channel (an admin "
        "can give me View Channel, Send Messages and Attach Files there)."
    ).format(channel=channel)


def rate_limited_too_long(platform: str, seconds: float) -> str:
    minutes = round(seconds / 60)
    return ngettext(
        "{platform} kept asking the bot to slow down for {minutes} minute, "
        "so the edited image could not be posted.",
        "{platform} kept asking the bot to slow down for {minutes} minutes, "
        "so the edited image could not be posted.",
        minutes,
    ).format(platform=platform_name(platform), minutes=f"{seconds / 60:.0f}")


def failure_message(exc: KontextError, job_id: str) -> str:
    """What the user reads when a job fails after its credits were reserved."""
    refunded = _("Your credits were refunded.")
    if exc.kind == ErrorKind.INTERNAL:
        return _(
            "Something went wrong on the bot's side (job {job}). {refunded} "
            "An operator can look the job up in the logs."
        ).format(job=job_id, refunded=refunded)
    return f"{exc.user_message} {refunded}"


# -- variations (``--n``, issue 27) ----------------------------------------------------------


def count_refused(written: str, most: int) -> str:
    """``--n`` out of range or not a number: refused free."""
    if most <= 1:
        return _(
            "This bot makes one image per request; leave out --n ('{written}' was asked)."
        ).format(written=written)
    return _(
        "--n must be a whole number from 1 to {most} (the number of variations); "
        "'{written}' is not. Nothing was charged."
    ).format(most=most, written=written)


def group_heading(group: GroupResult) -> str:
    """The first line of a posted group: how many came out, what they cost."""
    charged = sum(r.job.cost for r in group.results)
    return ngettext(
        "{made} of {count} variations · {charged} credit used · {left} left",
        "{made} of {count} variations · {charged} credits used · {left} left",
        charged,
    ).format(
        made=len(group.results),
        count=len(group.members),
        charged=charged,
        left=group.balance_after,
    )


def group_member_line(member: GroupMember) -> str:
    """One variation in a posted group: its number and seed, or why it failed and that
    it was refunded."""
    job = member.job
    if member.result is not None:
        seed = str(job.seed) if job.seed is not None else _("unknown")
        return _("#{index}: seed {seed}").format(index=job.group_index, seed=seed)
    reason = (member.failure or _("It failed.")).removesuffix(
        " " + _("Your credits were refunded.")
    )
    return ngettext(
        "#{index} failed: {reason} Its {cost} credit was refunded.",
        "#{index} failed: {reason} Its {cost} credits were refunded.",
        job.cost,
    ).format(index=job.group_index, reason=reason, cost=job.cost)


def group_all_failed(group: GroupResult) -> str:
    """Every variation failed: one message for all of them."""
    lines = [_("None of the {count} variations could be made.").format(count=len(group.members))]
    lines += [group_member_line(m) for m in group.members]
    return "\n".join(lines)


GROUP_IMAGES_GONE = N_(
    "The finished images of these variations are gone from the bot's disk, so they could "
    "not be posted."
)


def edit_label(index: int) -> str:
    """A group's button that edits variation ``index`` again."""
    return _("Edit #{index}").format(index=index)


def reroll_label(index: int) -> str:
    """A group's button that makes variation ``index`` again with a new seed."""
    return _("Re-roll #{index}").format(index=index)


# -- history (issue 19): a user's recent jobs ------------------------------------------------


def job_model(job: Job) -> str:
    """The model a job names in history: the name people typed (``--model NAME``) where
    the install has named models, else the provider's model id stored with the job."""
    return job.model_name or job.model


def job_outcome(job: Job) -> tuple[str, str]:
    """What became of a job and what it cost, in words."""
    if job.state == JobState.SUCCEEDED:
        return _("delivered"), ngettext("{n} credit", "{n} credits", job.cost).format(n=job.cost)
    if job.state in (JobState.FAILED, JobState.CANCELED):
        # A canceled job's kind is "canceled" (older rows: "user_input"): the state says it.
        shown = job.error_kind if job.state == JobState.FAILED else None
        why = f": {error_kind_word(shown)}" if shown else ""
        state = _("failed") if job.state == JobState.FAILED else _("canceled")
        return f"{state}{why}", _("refunded")
    return _("in progress"), _("{n} reserved").format(n=job.cost)


def error_kind_word(kind: str) -> str:
    """A failed job's kind (bot.errors.ErrorKind, and ``canceled``) in words."""
    words = {
        "user_input": N_("user input"),
        "quota": N_("quota"),
        "moderation": N_("moderation"),
        "provider_unavailable": N_("provider unavailable"),
        "platform": N_("platform"),
        "internal": N_("internal"),
        "canceled": N_("canceled"),
    }
    return _(words[kind]) if kind in words else kind.replace("_", " ")


def history_text(
    style: Style, user_id: str, jobs: Sequence[Job], *, own: bool, numbered: Sequence[str] = ()
) -> str:
    """One line per job, newest first: when, the prompt (shortened), model, seed, outcome,
    cost, and a link to the posted result where the platform gave one. ``numbered``: the
    ids of the jobs that carry buttons, marked 1, 2, ... as the buttons are."""
    if not jobs:
        if own:
            return _("You have no edits yet.")
        return _("{user} has no edits yet.").format(user=style.user(user_id))
    count = len(jobs)
    if own:
        header = ngettext("Your last {n} edit:", "Your last {n} edits:", count).format(n=count)
    else:
        header = ngettext("{user}'s last {n} edit:", "{user}'s last {n} edits:", count).format(
            user=style.user(user_id), n=count
        )
    lines = [header]
    for job in jobs:
        mark = f"{style.bold(f'#{numbered.index(job.id) + 1}')} " if job.id in numbered else ""
        lines.append(job_line(style, job, mark))
    return "\n".join(lines)


def job_line(style: Style, job: Job, mark: str = "") -> str:
    """One job as history (and the Home tab) shows it: when, the prompt (shortened),
    model, seed, outcome, cost, and a link to the posted result where the platform gave
    one."""
    outcome, cost = job_outcome(job)
    when = style.when(datetime.fromtimestamp(job.created_at, UTC))
    count = len(job.attachments)
    parts = [
        f"{mark}{when}",
        style.code(style.echo(short(job_about(job), 60).replace("`", "'"))),
        job_model(job),
        *([ngettext("{n} image", "{n} images", count).format(n=count)] if count > 1 else []),
        seed_text(job.seed),
        outcome,
        cost,
    ]
    where = job.delivered
    if where and where.get("link"):
        parts.append(style.link(str(where["link"]), _("result")))
    return " · ".join(parts)


# -- the home screen (Slack's Home tab, issue 28; bot.chat.home) ------------------------------

HOME_TITLE = N_("Kontext: edit images with FLUX")
HOME_EDITS_TITLE = N_("Your last edits")
HOME_NEW_EDIT = N_("New edit")
HOME_REROLL = N_("Re-roll")
HOME_EDIT_AGAIN = N_("Edit again")
HOME_ADMIN_TITLE = N_("Shared budget (admins only)")
HOME_DASHBOARD = N_("Open the dashboard")
HOME_THUMBNAIL = N_("The edited image")
HOME_CHANNEL_LABEL = N_("Post the result in")
HOME_CHOOSE_CHANNEL = N_("Choose the channel the result goes to.")
HOME_NOTICE_CLOSE = N_("OK")


def result_goes_to(style: Style, channel_id: str) -> str:
    """Said with a request started from the home screen, which is in no channel."""
    return _("The result will be posted in {channel}.").format(channel=style.channel(channel_id))


def home_empty_text(style: Style, cost_per_image: int) -> str:
    """The home screen of someone who has not edited anything yet: how to start."""
    return _(
        "You have no edits yet. Press {button} to make your first one: attach an image "
        "(or none, to make one from words), say what should change and choose the channel "
        "the result goes to. An image costs {cost} credits."
    ).format(button=style.bold(_(HOME_NEW_EDIT)), cost=number(cost_per_image))


# The span a shared budget counts over, as the budget's sentence says it.
_BUDGET_SPAN = {
    "daily": N_("today"),
    "weekly": N_("this week"),
    "monthly": N_("this month"),
    "never": N_("in all"),
}


def budget_text(style: Style, budget: BudgetStatus) -> str:
    """The shared budget's use in its period and today's spend, for admins."""
    span = _(_BUDGET_SPAN.get(budget.period, _BUDGET_SPAN["never"]))
    spent = budget.spent_in_period
    if budget.budget:
        used = _("{spent} of {budget} credits spent {span}, {left} left.").format(
            spent=style.bold(number(spent)),
            budget=style.bold(number(budget.budget)),
            span=span,
            left=number(max(0, budget.budget - spent)),
        )
    else:
        used = _("No shared budget (credits.budget is 0): {spent} credits spent {span}.").format(
            spent=number(spent), span=span
        )
    today = ngettext(
        "Today (UTC): {n} credit spent.", "Today (UTC): {n} credits spent.", budget.spent_today
    ).format(n=number(budget.spent_today))
    return f"{used} {today}"


# -- what a result's buttons answer when they cannot do their part (bot.chat.conversation) ------

REROLL_GONE = N_("I no longer have that edit's details, so I can't re-roll it.")
RESULT_IMAGE_GONE = N_("That result's image is gone, so there is nothing to edit.")
DELETE_FAILED = N_("I couldn't delete that image. Please try again later.")
DELETE_NOT_YOURS = N_("Only the person who asked for this image or an admin can delete it.")
# -- cancel (bot.jobs.cancellation) ------------------------------------------------------------

# Stored as a canceled job's error message (logs, the dashboard): English.
CANCELED_QUEUED = "Canceled before it started."
CANCELED_AT_PROVIDER = "Canceled at the image service."


def cancel_text(answer: CancelAnswer) -> str:
    """The answer to the one who asked to cancel."""
    job = answer.job
    short_id = job.id[:8] if job is not None else ""
    outcome = answer.outcome
    if outcome == Outcome.CANCELED:
        cost = job.cost if job else 0
        return ngettext(
            "Canceled job {job} before it started: {cost} credit refunded, {left} left.",
            "Canceled job {job} before it started: {cost} credits refunded, {left} left.",
            cost,
        ).format(job=short_id, cost=cost, left=answer.balance)
    if outcome == Outcome.ASKED:
        return _(
            "Asked the image service to stop job {job}. Its credits are refunded once "
            "it has stopped; if the image is already done, it is posted and charged."
        ).format(job=short_id)
    if outcome == Outcome.ALREADY_ASKED:
        return _("Job {job} is already being canceled.").format(job=short_id)
    if outcome == Outcome.CANNOT:
        return _(
            "Job {job} cannot be canceled: this image service has no way to stop an "
            "edit once it started. It goes on and is posted when done."
        ).format(job=short_id)
    if outcome == Outcome.FINISHED:
        return _("Job {job} has already finished; there is nothing to cancel.").format(job=short_id)
    if outcome == Outcome.NOT_YOURS:
        return _("Only the person who asked for this edit, or an admin, can cancel it.")
    return _("You have no edit in progress to cancel.")


def withdrawn_text(balance: int) -> str:
    """Told to the requester when their queued job was canceled."""
    return _("Canceled before it started: its credits were refunded, {left} left.").format(
        left=balance
    )


def canceled_text(balance: int | None) -> str:
    """Told to the requester when a running job was stopped and refunded."""
    if balance is None:
        return _("Canceled as asked: the edit was stopped and its credits refunded.")
    return _(
        "Canceled as asked: the edit was stopped and its credits refunded, {left} left."
    ).format(left=balance)


CANCEL_TOO_LATE = N_(
    "The edit finished before it could be stopped, so it was posted and charged as usual."
)


# -- presets and a result's buttons (issue 27, bot.chat.presets) -------------------------------


def preset_unknown(name: str, known: Sequence[str]) -> str:
    """A ``--preset`` (or a button) naming no preset in force: free, with the names."""
    if not known:
        return _("There is no preset named '{name}': no presets are set up here.").format(name=name)
    return _("There is no preset named '{name}'. The presets are: {known}.").format(
        name=name, known=", ".join(known)
    )


PRESET_GONE = N_("That preset is no longer set up here, so this button does nothing now.")
PRESET_NEEDS_IMAGE = N_("A preset changes an image: attach one (or use it on a result's button).")
# The "More…" select of every preset under a result.
MORE_PLACEHOLDER = N_("More…")
# The result's own buttons as ``[results] buttons`` names them (bot.chat.presets).
REROLL_LABEL = N_("Re-roll")
EDIT_LABEL = N_("Edit again")
UPSCALE_LABEL = N_("Upscale")
DELETE_LABEL = N_("Delete")


# -- upscale (issue 27; docs/models.md) ----------------------------------------------------

UPSCALE_OPTION_HELP = N_("""
  --upscale N      make the attached image N times larger (no prompt needed): {scales}""")
NO_UPSCALER = N_("No upscaler is set up here, so --upscale is not available. Nothing was charged.")
UPSCALE_NEEDS_IMAGE = N_(
    "Attach the image to upscale, e.g. /kontext --upscale 2 with a photo. Nothing was charged."
)
UPSCALE_ONCE = N_("--n makes variations of an edit; an upscale is made once, so leave --n out.")
UPSCALE_ONE_IMAGE = N_("--upscale takes one image; attach just the one to make larger.")


def upscale_help(models: Catalogue | None) -> str:
    """The help's ``--upscale N`` line, only where an upscaler is configured."""
    upscaler = models.upscaler() if models is not None else None
    if upscaler is None:
        return ""
    return _(UPSCALE_OPTION_HELP).format(scales=upscale_scales(upscaler.scales))


def upscale_scales(scales: Sequence[int]) -> str:
    return pgettext("a list's last joint", " or ").join(str(s) for s in scales)


def upscale_scale_refused(raw: str, scales: Sequence[int]) -> str:
    return _(
        "--upscale {asked} is not a scale I can make; use {scales}. Nothing was charged."
    ).format(asked=raw, scales=upscale_scales(scales))


def upscale_alone(options: Sequence[str]) -> str:
    return _(
        "--upscale only makes the image larger; leave out {options}. Nothing was charged."
    ).format(options=", ".join(options))


def model_is_upscaler(model: str, scales: Sequence[int]) -> str:
    return _(
        "{model} is an upscaler, not an edit model: use it as --upscale {scale} on an image."
    ).format(model=model, scale=scales[0] if scales else 2)


def model_not_upscaler(model: str, upscalers: Sequence[str]) -> str:
    return _(
        "{model} edits images and does not upscale; for --upscale leave out --model "
        "or name one of: {upscalers}."
    ).format(model=model, upscalers=", ".join(upscalers))


def upscale_too_large(width: int, height: int, scale: int, most: int) -> str:
    """An input that would upscale past the output cap: refused before the provider runs."""
    return _(
        "The image is {width}×{height}; {scale}x larger it would be over the "
        "{most} megapixels I can handle. Try --upscale with a smaller scale or image; "
        "nothing was charged."
    ).format(width=width, height=height, scale=scale, most=number(most / 1e6, "0"))


def upscaled_about(scale: int) -> str:
    """What a posted upscale says instead of a prompt."""
    return _("Upscaled {scale}x").format(scale=scale)


def fitted_note(platform: str, limit: int, width: int, height: int, smaller: bool) -> str:
    """Said with a result that was too large for the platform's upload limit and was
    made to fit (bot.images.fitting)."""
    values = {
        "platform": platform_name(platform),
        "limit": number(limit / 1024**2, "0.#"),
        "width": width,
        "height": height,
    }
    if smaller:
        return _(
            "The full-size image is over {platform}'s {limit} MB limit, so it is posted "
            "as a JPEG at {width}×{height}."
        ).format(**values)
    return _(
        "The full-size image is over {platform}'s {limit} MB limit, so it is posted as a "
        "high-quality JPEG ({width}×{height})."
    ).format(**values)


def job_about(job: Job) -> str:
    """What a job's messages show of it: its prompt, or for an upscale "Upscaled 2x"."""
    if job.options.upscale is not None:
        return upscaled_about(job.options.upscale)
    return job.prompt
