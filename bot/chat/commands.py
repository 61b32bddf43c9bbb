"""The ``/kontext`` text grammar shared by every platform.

``/kontext <prompt> [--ar RATIO] [--seed N] [--format png|jpg|webp] [--upsample]
[--safety N] [--model NAME] [--res MP] [--preset NAME] [--n COUNT]``, and
``/kontext --upscale N`` with an image (an upscaler makes it N times larger; no prompt).

Which values each option may take is the chosen model's profile (bot.credits.model_profiles):
the options are checked against it here, before anything is reserved.

People type this on phones and in chat clients that "fix" their typing, so the parser is
forgiving about form (``--ar=16:9``, ``—ar`` from autocorrect, ``16x9``) and strict about
meaning: every mistake is a ``UserInputError`` whose message says what to write instead,
and no text, however odd, raises anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.chat import texts
from bot.credits.model_profiles import ImageTransport, ModelProfile
from bot.credits.models import Catalogue
from bot.domain import (
    DEFAULT_SAFETY,
    SAFETY_MAX,
    SAFETY_MAX_WITH_IMAGE,
    SEED_MAX,
    EditOptions,
    OutputFormat,
)
from bot.errors import UserInputError
from bot.i18n import _, pgettext
from bot.providers.base import ProviderCapabilities


@dataclass(frozen=True)
class EditCommand:
    """``preset``: the name after ``--preset`` as written; the conversation layer finds
    it and expands it (bot.chat.presets), so ``prompt`` may then be empty."""

    prompt: str
    options: EditOptions
    preset: str | None = None


@dataclass(frozen=True)
class HelpCommand:
    pass


@dataclass(frozen=True)
class CreditsCommand:
    pass


@dataclass(frozen=True)
class CancelCommand:
    """``cancel``: stop the asker's newest unfinished job (bot.jobs.cancellation)."""


# -- history (issue 19) ---------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryCommand:
    """``history`` or ``history <whom>``: ``whom`` is a mention or a user reference as
    written (the conversation layer decides whose jobs it names)."""

    whom: str | None = None


# Whom: a mention (``<@U123|name>``, ``<@123>``) or something written like a user
# reference (``slack:T1:U1``); anything else after "history" is a prompt ("history
# painting style") and stays an edit.
_HISTORY = re.compile(
    r"^history(?:\s+(?P<whom><@!?[A-Za-z0-9]+(?:\|[^>]*)?>|[a-z][a-z0-9_]*:[^:\s]+:[^:\s]+))?$",
    re.IGNORECASE,
)


def parse_history(text: str, bot_mentions: Iterable[str] = ()) -> HistoryCommand | None:
    """``history [whom]`` after the addressing (``/kontext``, a mention of the bot)."""
    match = _HISTORY.match(" ".join(strip_addressing(text, bot_mentions).split()))
    return HistoryCommand(match["whom"]) if match else None


# ------------------------------------------------------------------------------------------

ParsedCommand = EditCommand | HelpCommand | CreditsCommand | CancelCommand

_FLAG_NAMES = {
    "ar": "ar",
    "aspect-ratio": "ar",
    "aspect_ratio": "ar",
    "seed": "seed",
    "format": "format",
    "upsample": "upsample",
    "safety": "safety",
    "model": "model",
    "res": "res",
    "resolution": "res",
    "preset": "preset",
    "n": "n",
    "count": "n",
    "variations": "n",
    "upscale": "upscale",
}
_VALUE_FLAGS = {"ar", "seed", "format", "safety", "model", "res", "preset", "n", "upscale"}
_KNOWN = "--ar, --seed, --format, --upsample, --safety, --model, --res, --preset, --n, --upscale"
# With one model there is nothing to choose: --model is not offered (still understood).
_KNOWN_ONE_MODEL = "--ar, --seed, --format, --upsample, --safety, --res, --preset, --n, --upscale"
# The most variations one request may ask (``--n``); the operator's
# ``jobs.max_variations`` may lower it.
MAX_VARIATIONS = 4
# Autocorrect turns "--" into an em or en dash; a leading "—ar" means "--ar".
_DASHES = ("--", "\u2014", "\u2013")
_LEADING_MENTION = re.compile(r"^\s*(?:<@!?[A-Za-z0-9]+(?:\|[^>]*)?>\s*)+")
_MENTION_TOKEN = re.compile(r"<@!?[A-Za-z0-9]+(?:\|[^>]*)?>")
_TRIGGERS = {"/kontext", "!kontext"}
_TRIGGER = re.compile(r"^\s*[/!]kontext(?=\s|$)", re.IGNORECASE)
_RATIO_X = re.compile(r"^(\d+)\s*[xX×]\s*(\d+)$")
_FORMATS: dict[str, OutputFormat] = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp"}


def _flag_name(token: str) -> tuple[str, str | None] | None:
    """The canonical flag and an inline ``=value`` if ``token`` is a flag, else None."""
    for dash in _DASHES:
        if token.startswith(dash) and len(token) > len(dash):
            body = token[len(dash) :]
            name, sep, value = body.partition("=")
            return name.lower(), (value if sep else None)
    return None


def _looks_like_flag(token: str) -> bool:
    flag = _flag_name(token)
    return flag is not None and bool(re.match(r"^[a-z][a-z_-]*$", flag[0]))


def starts_with_trigger(text: str) -> bool:
    """``/kontext ...`` or ``!kontext ...`` typed as a plain message."""
    return bool(_TRIGGER.match(text))


def strip_addressing(text: str, bot_mentions: Iterable[str] = ()) -> str:
    """Remove how people address the bot: leading mentions, ``/kontext``, literal names."""
    for literal in bot_mentions:
        if literal:
            text = text.replace(literal, " ")
    text = _LEADING_MENTION.sub(" ", text)
    text = _TRIGGER.sub(" ", text)
    return text


def parse_command(
    text: str,
    *,
    has_image: bool,
    capabilities: ProviderCapabilities,
    bot_mentions: Iterable[str] = (),
    models: Catalogue | None = None,
    max_count: int = MAX_VARIATIONS,
) -> ParsedCommand:
    tokens = strip_addressing(text, bot_mentions).split()
    words: list[str] = []
    values: dict[str, str | None] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not _looks_like_flag(token):
            words.append(token)
            continue
        raw_name, inline = _flag_name(token) or ("", None)
        name = _FLAG_NAMES.get(raw_name)
        if name is None:
            known = _KNOWN if models is None or models.several else _KNOWN_ONE_MODEL
            if models is not None and models.upscalers:
                known += ", --upscale"
            raise UserInputError(
                _("I don't know the option --{name}. The options are {known}.").format(
                    name=raw_name, known=known
                )
            )
        if name in values:
            raise UserInputError(_("--{name} is given twice; give it once.").format(name=name))
        if name not in _VALUE_FLAGS:
            if inline is not None:
                raise UserInputError(
                    _("--{name} takes no value; write just --{name}.").format(name=name)
                )
            values[name] = None
            continue
        if inline is None:
            if index >= len(tokens) or _looks_like_flag(tokens[index]):
                raise UserInputError(_needs_value(name))
            inline = tokens[index]
            index += 1
        if not inline:
            raise UserInputError(_needs_value(name))
        values[name] = inline

    # Addressing that stood behind a leading flag ("--upsample <@U1> ...") is still
    # addressing, not prompt.
    while words and (_MENTION_TOKEN.fullmatch(words[0]) or words[0].lower() in _TRIGGERS):
        words.pop(0)
    prompt = " ".join(words)
    if not values and prompt.strip().lower() == "help":
        return HelpCommand()
    if not values and prompt.strip().lower() in {"credits", "balance"}:
        return CreditsCommand()
    if not values and prompt.strip().lower() == "cancel":
        return CancelCommand()
    upscale = values.get("upscale")
    options = build_options(
        has_image=has_image,
        capabilities=capabilities,
        aspect_ratio=values.get("ar"),
        seed=_parse_int(values["seed"], "seed") if values.get("seed") is not None else None,
        output_format=values.get("format"),
        upsample="upsample" in values,
        safety=_parse_int(values["safety"], "safety") if values.get("safety") is not None else None,
        model=values.get("model"),
        models=models,
        resolution=_parse_res(values["res"]) if values.get("res") is not None else None,
        count=_parse_count(values["n"], max_count) if values.get("n") is not None else None,
        max_count=max_count,
        upscale=_parse_scale(upscale, models) if upscale is not None else None,
        given=frozenset(values),
    )
    if options.upscale is not None:
        # An upscale reads no prompt: the words, if any, are kept only to show.
        return EditCommand(prompt=" ".join(prompt.split()), options=options)
    preset = values.get("preset")
    if preset is not None:
        # The preset's template is the prompt; the user's words may be none at all.
        return EditCommand(prompt=" ".join(prompt.split()), options=options, preset=preset)
    profile = options_profile(capabilities, models, options.model)
    return EditCommand(prompt=validate_prompt(prompt, capabilities, profile), options=options)


_EXAMPLES = {
    "ar": "--ar 16:9",
    "seed": "--seed 42",
    "format": "--format jpg",
    "safety": "--safety 2",
    "model": "--model max",
    "res": "--res 2",
    "preset": "--preset zoom-out",
    "n": "--n 4",
    "upscale": "--upscale 2",
}


def _parse_count(raw: str | None, most: int) -> int:
    text = (raw or "").strip()
    if not re.fullmatch(r"\d{1,3}", text):
        raise UserInputError(texts.count_refused(raw or "", most))
    return int(text)


def _parse_scale(raw: str, models: Catalogue | None) -> int:
    """``--upscale 2`` (also ``2x``); a refusal names the upscaler's scales."""
    text = raw.strip().lower().removesuffix("x").strip()
    upscaler = models.upscaler() if models is not None else None
    if upscaler is None:
        raise UserInputError(_(texts.NO_UPSCALER))
    if not re.fullmatch(r"\d{1,3}", text):
        raise UserInputError(texts.upscale_scale_refused(raw, upscaler.scales))
    return int(text)


def _parse_res(raw: str | None) -> int:
    text = (raw or "").strip().lower().removesuffix("mp").strip()
    if not re.fullmatch(r"\d{1,2}", text):
        raise UserInputError(texts.res_not_a_number(raw or ""))
    return int(text)


def _parse_int(raw: str | None, name: str) -> int:
    text = (raw or "").strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", text):
        bounds = f"0 to {SEED_MAX}" if name == "seed" else f"0 to {SAFETY_MAX}"
        raise UserInputError(
            _("--{name} must be a whole number from {bounds}; '{raw}' is not.").format(
                name=name, bounds=bounds, raw=raw
            )
        )
    return int(text)


def _needs_value(name: str) -> str:
    return _("--{name} needs a value, e.g. {example}.").format(name=name, example=_EXAMPLES[name])


def validate_prompt(
    prompt: str, capabilities: ProviderCapabilities, profile: ModelProfile | None = None
) -> str:
    """The prompt, spaces collapsed; refused empty or longer than the model reads."""
    cleaned = " ".join(prompt.split())
    if not cleaned:
        raise UserInputError(
            _("Write what to change, e.g. /kontext make it a watercolor (or /kontext help).")
        )
    limit = profile.max_prompt_chars if profile is not None else capabilities.max_prompt_chars
    if len(cleaned) > limit:
        raise UserInputError(
            _(
                "The prompt is {length} characters long; the limit is {limit}. "
                "Shorten it and try again."
            ).format(length=len(cleaned), limit=limit)
        )
    return cleaned


def _normalise_ratio(raw: str) -> str:
    text = raw.strip().lower()
    match = _RATIO_X.match(text)
    if match:
        return f"{match.group(1)}:{match.group(2)}"
    return re.sub(r"\s*:\s*", ":", text)


def options_profile(
    capabilities: ProviderCapabilities, models: Catalogue | None, model: str | None
) -> ModelProfile:
    """The profile the options are checked against: the chosen model's (its first
    provider's, bot.credits.models) when there is a catalogue; else one made of the provider's
    capabilities, as the options were checked before model profiles."""
    if models is not None:
        chosen = models.get(model)
        if chosen is not None:
            return chosen.main_profile
    return ModelProfile(
        family="kontext",
        transport=ImageTransport.SINGLE,
        max_images=capabilities.max_input_images,
        aspect_ratios=capabilities.aspect_ratios,
        output_formats=capabilities.output_formats,
        text_to_image=capabilities.supports_text_to_image,
        max_prompt_chars=capabilities.max_prompt_chars,
    )


def build_options(
    *,
    has_image: bool,
    capabilities: ProviderCapabilities,
    aspect_ratio: str | None = None,
    seed: int | None = None,
    output_format: str | None = None,
    upsample: bool = False,
    safety: int | None = None,
    model: str | None = None,
    models: Catalogue | None = None,
    resolution: int | None = None,
    count: int | None = None,
    max_count: int = MAX_VARIATIONS,
    upscale: int | None = None,
    given: frozenset[str] | None = None,
) -> EditOptions:
    """Validate options however they arrived (text flags or real slash-command options),
    against the chosen model's profile: each refusal is free and names what it takes.
    ``given``: the options typed (text grammar), so an upscale refuses edit options."""
    if upscale is not None:
        if count is not None and count > 1:
            raise UserInputError(_(texts.UPSCALE_ONCE))
        asked = (
            given
            if given is not None
            else _asked(
                ar=aspect_ratio,
                seed=seed,
                format=output_format,
                upsample=upsample or None,
                safety=safety,
                res=resolution,
            )
        )
        return upscale_options(
            has_image=has_image, scale=upscale, model=model, models=models, given=asked
        )
    chosen_model: str | None = None
    if model is not None and model.strip():
        # The catalogue's spelling of the name; an unknown one is refused with the list.
        chosen_model = models.choose(model).name if models is not None else model.strip()
        upscaler = models.upscaler(chosen_model) if models is not None else None
        if upscaler is not None:
            raise UserInputError(texts.model_is_upscaler(upscaler.name, upscaler.scales))
    profile = options_profile(capabilities, models, chosen_model)
    # Refusals name the model when there is a choice of them (the default included).
    named = (chosen_model or models.default.name) if models is not None and models.several else None
    ratio: str | None = None
    if aspect_ratio is not None:
        ratio = _normalise_ratio(aspect_ratio)
        if ratio not in profile.aspect_ratios:
            allowed = ", ".join(profile.aspect_ratios)
            raise UserInputError(
                _(
                    "'{ratio}' is not an aspect ratio I can make{with_model}. "
                    "Choose one of: {allowed}."
                ).format(ratio=aspect_ratio, with_model=texts.with_model(named), allowed=allowed)
            )
        if ratio == "match_input_image" and not has_image:
            raise UserInputError(
                _(
                    "--ar match_input_image needs an input image; attach one or pick a ratio "
                    "such as 1:1 or 16:9."
                )
            )
    if seed is not None and not 0 <= seed <= SEED_MAX:
        raise UserInputError(
            _("--seed must be a whole number from 0 to {most}.").format(most=SEED_MAX)
        )
    fmt: OutputFormat = "png"
    if output_format is not None:
        chosen = _FORMATS.get(output_format.strip().lower())
        allowed_formats = [f for f in profile.output_formats if f in _FORMATS]
        if chosen is None or chosen not in allowed_formats:
            raise UserInputError(
                _(
                    "'{format}' is not an output format I can make{with_model}; use {formats}."
                ).format(
                    format=output_format,
                    with_model=texts.with_model(named),
                    formats=pgettext("a list's last joint", " or ").join(allowed_formats),
                )
            )
        fmt = chosen
    level = DEFAULT_SAFETY if safety is None else safety
    if profile.safety_min == 0 and profile.safety_max == SAFETY_MAX:
        # Kontext's rule, worded as before (BFL's Kontext docs: 0-6, at most 2 with
        # an image).
        if not 0 <= level <= SAFETY_MAX:
            raise UserInputError(texts.safety_range(None, 0, SAFETY_MAX))
        if has_image and level > SAFETY_MAX_WITH_IMAGE:
            raise UserInputError(
                _(
                    "--safety can be at most {most} when an image is given "
                    "(the provider's rule); it goes up to {text_most} for text-to-image."
                ).format(most=SAFETY_MAX_WITH_IMAGE, text_most=SAFETY_MAX)
            )
    elif not profile.safety_min <= level <= profile.safety_limit(has_image):
        raise UserInputError(
            texts.safety_range(named, profile.safety_min, profile.safety_limit(has_image))
        )
    if resolution is not None and resolution not in profile.resolutions:
        raise UserInputError(texts.res_refused(named, resolution, profile.resolutions))
    if count is not None and not 1 <= count <= max_count:
        raise UserInputError(texts.count_refused(str(count), max_count))
    return EditOptions(
        aspect_ratio=ratio,
        seed=seed,
        output_format=fmt,
        upsample=upsample,
        safety=level,
        model=chosen_model,
        resolution=resolution,
        count=count or 1,
    )


# -- --upscale (issue 27) -----------------------------------------------------------------------

# What an upscale does not read: an edit's options, refused by name when given with it.
_NOT_FOR_UPSCALE = ("ar", "seed", "format", "upsample", "safety", "res")


def _asked(**values: object) -> frozenset[str]:
    return frozenset(name for name, value in values.items() if value is not None)


def upscale_options(
    *,
    has_image: bool,
    scale: int,
    model: str | None,
    models: Catalogue | None,
    given: frozenset[str] = frozenset(),
) -> EditOptions:
    """The options of an upscale job: the configured upscaler (or the one ``--model``
    names) at a scale of its profile. Refusals are free: no upscaler configured, an
    edit model named, a scale it does not make, edit options beside it, no image."""
    upscaler = models.upscaler() if models is not None else None
    if upscaler is None or models is None:
        raise UserInputError(_(texts.NO_UPSCALER))
    if model is not None and model.strip():
        named = models.choose(model)
        if not named.upscales:
            raise UserInputError(
                texts.model_not_upscaler(named.name, [m.name for m in models.upscalers])
            )
        upscaler = named
    extra = [f"--{name}" for name in _NOT_FOR_UPSCALE if name in given]
    if extra:
        raise UserInputError(texts.upscale_alone(extra))
    if scale not in upscaler.scales:
        raise UserInputError(texts.upscale_scale_refused(str(scale), upscaler.scales))
    if not has_image:
        raise UserInputError(_(texts.UPSCALE_NEEDS_IMAGE))
    return EditOptions(model=upscaler.name, upscale=scale)
