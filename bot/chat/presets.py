"""Presets: named instructions (``--preset zoom-out``, a result's Zoom out button).

A preset is a prompt template whose ``{prompt}`` is what the user added (possibly
nothing), with options it sets (an aspect ratio, a model) and how its button looks. The
operator's ``[[presets]]`` change, remove or add to the shipped ones
(bot.config.presets); this module is the pure part the conversation layer uses: finding
a preset by name, expanding its template, and the layout of a result's buttons with the
platforms' limits, so the config can refuse a list that cannot fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from bot.i18n import _

# The result's own buttons, beside the presets, as ``[results] buttons`` names them.
REROLL, EDIT, UPSCALE, DELETE = "reroll", "edit", "upscale", "delete"
BUILT_IN_BUTTONS = (REROLL, EDIT, UPSCALE, DELETE)
# A preset's name is part of a button's custom id / action id, so it is short and plain.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"

# Discord: a message holds at most 5 action rows; a row holds 5 buttons or one select;
# a select lists at most 25 options
# (https://discord.com/developers/docs/components/reference#action-row,
# .../components/reference#string-select).
DISCORD_ROWS = 5
DISCORD_BUTTONS_PER_ROW = 5
DISCORD_SELECT_OPTIONS = 25
# Slack: an actions block holds at most 25 elements; a static select at most 100 options
# (https://docs.slack.dev/reference/block-kit/blocks/actions-block,
# .../block-elements/select-menu-element).
SLACK_ACTIONS_ELEMENTS = 25
SLACK_SELECT_OPTIONS = 100


@dataclass(frozen=True)
class Preset:
    """One named instruction. ``aspect_ratio``/``model``: what it sets unless the user
    gave their own; ``new_seed``: applied to a result it picks a new seed (the vary
    presets), where the others keep the result's seed so only the instruction differs."""

    name: str
    prompt: str
    label: str
    emoji: str = ""
    aspect_ratio: str | None = None
    model: str | None = None
    new_seed: bool = False
    description: str = ""
    # A shipped label is a catalog entry, shown in the reader's language; the
    # operator's own ``button`` is shown as written.
    translated: bool = False

    def shown_label(self) -> str:
        """The label in the language in force (see ``translated``)."""
        return _(self.label) if self.translated else self.label

    def expand(self, words: str) -> str:
        """The template with the user's words in place of ``{prompt}``, spaces tidied."""
        return " ".join(self.prompt.replace("{prompt}", " ".join(words.split())).split())


class PresetBook:
    """The presets in force, in the operator's order."""

    def __init__(self, presets: Iterable[Preset] = ()) -> None:
        self._presets = {p.name: p for p in presets}

    def __iter__(self) -> Iterator[Preset]:
        return iter(self._presets.values())

    def __len__(self) -> int:
        return len(self._presets)

    def __bool__(self) -> bool:
        return bool(self._presets)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._presets)

    def get(self, name: str) -> Preset | None:
        return self._presets.get(name.strip().lower())


@dataclass(frozen=True)
class ResultButton:
    """One button of a result: ``action`` is a built-in name (``reroll``, ``edit``,
    ``upscale``, ``delete``) or ``preset`` with the preset's name."""

    action: str
    label: str
    emoji: str = ""
    preset: str | None = None
    # The built-in labels and the shipped presets' are catalog entries (Preset.translated).
    translated: bool = True

    def shown_label(self) -> str:
        """The label in the language in force, made when the message is (the pipeline
        has set the job's language by then)."""
        return _(self.label) if self.translated else self.label


@dataclass(frozen=True)
class ResultLayout:
    """A result's buttons in order, and the "More…" select's presets (name, label)."""

    buttons: tuple[ResultButton, ...]
    more: tuple[Preset, ...] = ()

    def more_options(self) -> list[tuple[str, str]]:
        """(name, label in the language in force) of the More… select's presets."""
        return [(p.name, p.shown_label()) for p in self.more]


def discord_rows(buttons: int, select: bool) -> int:
    """How many of a Discord message's action rows the buttons (5 a row) and a select
    (a row of its own) take."""
    return math.ceil(buttons / DISCORD_BUTTONS_PER_ROW) + (1 if select else 0)


def layout_problems(buttons: Sequence[str], presets: Sequence[str]) -> list[str]:
    """Why ``[results] buttons`` cannot be shown (empty: it can): unknown names, repeats,
    and more than Discord's rows or Slack's actions block hold (the "More…" select takes
    a Discord row and a Slack element when there are presets)."""
    problems: list[str] = []
    seen: set[str] = set()
    for name in buttons:
        if name in seen:
            problems.append(f"results.buttons: '{name}' is listed twice")
        seen.add(name)
        if name not in BUILT_IN_BUTTONS and name not in presets:
            known = ", ".join([*BUILT_IN_BUTTONS, *presets])
            problems.append(f"results.buttons: no button or preset named '{name}' (known: {known})")
    select = bool(presets)
    rows = discord_rows(len(buttons), select)
    if rows > DISCORD_ROWS:
        most = (DISCORD_ROWS - (1 if select else 0)) * DISCORD_BUTTONS_PER_ROW
        problems.append(
            f"results.buttons: {len(buttons)} buttons do not fit on a Discord message "
            f"(5 rows of 5 buttons, the More… select taking a row): list at most {most}"
        )
    elements = len(buttons) + (1 if select else 0)
    if elements > SLACK_ACTIONS_ELEMENTS:
        problems.append(
            f"results.buttons: {elements} elements do not fit in a Slack actions block "
            f"(at most {SLACK_ACTIONS_ELEMENTS})"
        )
    if len(presets) > DISCORD_SELECT_OPTIONS:
        problems.append(
            f"presets: {len(presets)} presets do not fit in Discord's More… select "
            f"(at most {DISCORD_SELECT_OPTIONS} options)"
        )
    return problems
