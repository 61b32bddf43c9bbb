"""The result message's buttons and the prompt modal.

The buttons are discord.py ``DynamicItem``s: the job id lives in the custom id and the
job itself in storage, so a button works after a restart and after being pressed any
number of times (the classic "this interaction failed" of image bots whose buttons are
in-memory views). Their callbacks hand over to the adapter's ``buttons`` (results.py), found on the
client.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

import discord

from bot.chat import texts
from bot.chat.presets import ResultLayout
from bot.chat.texts import MORE_PLACEHOLDER
from bot.i18n import N_, _

JOB_ID = r"(?P<job>[0-9a-f]{32})"
# Discord lists at most 25 choices on an option and 25 options in a select menu
# (https://discord.com/developers/docs/interactions/application-commands, "Application
# Command Option Structure"; .../components/reference, "String Select").
MAX_CHOICES = 25


class ButtonHandler(Protocol):
    async def reroll(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def edit_again(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def delete_result(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...

    async def apply_preset(
        self, interaction: discord.Interaction[Any], job_id: str, preset: str
    ) -> None: ...

    async def upscale(self, interaction: discord.Interaction[Any], job_id: str) -> None: ...


def _handler(interaction: discord.Interaction[Any]) -> ButtonHandler:
    return cast(ButtonHandler, interaction.client.kontext.buttons)  # set by KontextBot


async def _speak(interaction: discord.Interaction[Any]) -> bool:
    """A button or form answers in its user's language: decided in the component's own
    task (discord.py awaits the check right before the callback), by the core."""
    await interaction.client.kontext.speak_to(interaction)
    return True


class _JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"^$"):
    action = ""
    label = ""
    emoji = ""
    style = discord.ButtonStyle.secondary

    def __init__(self, job_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                # Translated when the button is made: in the language of the answer.
                label=_(self.label),
                emoji=self.emoji,
                style=self.style,
                custom_id=f"kontext:{self.action}:{job_id}",
            )
        )
        self.job_id = job_id

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _speak(interaction)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> _JobButton:
        return cls(match["job"])


class RerollButton(_JobButton, template=rf"^kontext:reroll:{JOB_ID}$"):
    action, label, emoji = "reroll", N_("Re-roll"), "🎲"
    style = discord.ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).reroll(interaction, self.job_id)


class EditAgainButton(_JobButton, template=rf"^kontext:again:{JOB_ID}$"):
    action, label, emoji = "again", N_("Edit again"), "✏️"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).edit_again(interaction, self.job_id)


class DeleteButton(_JobButton, template=rf"^kontext:delete:{JOB_ID}$"):
    action, label, emoji = "delete", N_("Delete"), "🗑️"
    style = discord.ButtonStyle.danger

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).delete_result(interaction, self.job_id)


class UpscaleButton(_JobButton, template=rf"^kontext:upscale:{JOB_ID}$"):
    """A result's Upscale (shown only when an upscale model is configured): that result
    made larger by the upscaler, at its smallest scale, paid by the one who clicks."""

    action, label, emoji = "upscale", N_("Upscale"), "🔎"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).upscale(interaction, self.job_id)


class CancelButton(_JobButton, template=rf"^kontext:cancel:{JOB_ID}$"):
    """On the status message while the job waits or runs (bot.jobs.cancellation); the result
    replaces the message's buttons with its own."""

    action, label, emoji = "cancel", N_("Cancel"), "✖️"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).cancel_job(interaction, self.job_id)


class PresetButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"^kontext:preset:(?P<preset>[a-z0-9][a-z0-9-]{{0,39}}):{JOB_ID}$",
):
    """A preset's button (Zoom out, Make square …): the preset's name and the job id
    are in the custom id (at most 100 characters: 15 + 40 + 32), so it works after a
    restart; what the preset does is the conversation layer's (bot.chat.presets)."""

    def __init__(self, job_id: str, preset: str, label: str = "", emoji: str = "") -> None:
        super().__init__(
            discord.ui.Button(
                label=label or preset,
                emoji=emoji or None,
                style=discord.ButtonStyle.secondary,
                custom_id=f"kontext:preset:{preset}:{job_id}",
            )
        )
        self.job_id = job_id
        self.preset = preset

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _speak(interaction)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PresetButton:
        return cls(match["job"], match["preset"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _handler(interaction).apply_preset(interaction, self.job_id, self.preset)


class MoreSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]], template=rf"^kontext:more:{JOB_ID}$"
):
    """The "More…" select: every preset, the chosen one applied to the result. The
    options are rebuilt from the message's own when the item is recreated after a
    restart (only the chosen value matters then)."""

    def __init__(self, job_id: str, presets: Sequence[tuple[str, str]] = ()) -> None:
        options = [
            discord.SelectOption(label=label[:100], value=name)
            for name, label in presets[:MAX_CHOICES]
        ] or [discord.SelectOption(label="…", value="-")]
        super().__init__(
            discord.ui.Select(
                custom_id=f"kontext:more:{job_id}",
                placeholder=_(MORE_PLACEHOLDER),
                options=options,
                min_values=1,
                max_values=1,
            )
        )
        self.job_id = job_id

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _speak(interaction)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> MoreSelect:
        return cls(match["job"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        values = self.item.values
        chosen = str(values[0]) if values else ""
        await _handler(interaction).apply_preset(interaction, self.job_id, chosen)


DYNAMIC_ITEMS = (
    RerollButton,
    EditAgainButton,
    DeleteButton,
    UpscaleButton,
    PresetButton,
    MoreSelect,
)
_BUILT_IN: dict[str, type[_JobButton]] = {
    "reroll": RerollButton,
    "edit": EditAgainButton,
    "upscale": UpscaleButton,
    "delete": DeleteButton,
}
# Registered with the client beside the result's buttons (``DYNAMIC_ITEMS``).
STATUS_ITEMS = (CancelButton,)


def cancel_view(job_id: str) -> discord.ui.View:
    """The status message's one button."""
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(job_id))
    return view


def result_view(job_id: str, layout: ResultLayout | None = None) -> discord.ui.View:
    """A result's buttons as the conversation layer lists them (bot.chat.presets), 5 to an
    action row, then the More… select on a row of its own (a select fills a row;
    https://discord.com/developers/docs/components/reference#action-row). The config
    refuses a list that needs more than Discord's 5 rows. Without a layout: Re-roll,
    Edit again, Delete."""
    view = discord.ui.View(timeout=None)
    if layout is None:
        for button in (RerollButton, EditAgainButton, DeleteButton):
            view.add_item(button(job_id))
        return view
    row = 0
    for index, spec in enumerate(layout.buttons):
        row = index // 5
        item: discord.ui.Item[Any] | None
        if spec.action == "preset" and spec.preset:
            item = PresetButton(job_id, spec.preset, spec.shown_label(), spec.emoji)
        elif spec.action in _BUILT_IN:
            item = _BUILT_IN[spec.action](job_id)
        else:
            item = None  # a name the layout does not know: nothing to show
        if item is not None:
            item.row = row
            view.add_item(item)
    if layout.more:
        select = MoreSelect(job_id, layout.more_options())
        select.row = (len(layout.buttons) + 4) // 5
        view.add_item(select)
    return view


def group_view(indexed: Sequence[tuple[int, str]], delete_job: str) -> discord.ui.View:
    """A group of variations' buttons (``--n``, issue 27): a row of "Edit #k", a row of
    "Re-roll #k" (the same custom ids as a single result's, so the same handlers, after
    restarts too), and Delete for the message. At most 4 variations: within Discord's 5
    buttons per row and 5 rows (https://discord.com/developers/docs/components/reference
    #action-row)."""
    view = discord.ui.View(timeout=None)
    for index, job_id in indexed[:5]:
        edit = EditAgainButton(job_id)
        edit.item.label, edit.item.row = texts.edit_label(index), 0
        view.add_item(edit)
        reroll = RerollButton(job_id)
        reroll.item.label, reroll.item.row = texts.reroll_label(index), 1
        view.add_item(reroll)
    delete = DeleteButton(delete_job)
    delete.item.row = 2
    view.add_item(delete)
    return view


def history_view(job_ids: Sequence[str]) -> discord.ui.View:
    """A history answer's buttons: the same Re-roll and Edit again (same custom ids, so
    the same handlers, after restarts too) for each listed job, one action row per job,
    numbered as the history text marks the job. Discord allows 5 action rows of 5
    buttons per message (https://discord.com/developers/docs/components/reference
    #action-row): the conversation layer lists at most 5 jobs."""
    view = discord.ui.View(timeout=None)  # empty: a message without components
    for row, job_id in enumerate(job_ids[:5]):
        for button in (RerollButton(job_id), EditAgainButton(job_id)):
            button.item.label = f"{_(button.label)} #{row + 1}"
            button.item.row = row
            view.add_item(button)
    return view


PROMPT_LABEL = N_("What should change?")


class PromptModal(discord.ui.Modal):
    """Asks what to change; the caller decides what the input image is."""

    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label=PROMPT_LABEL,
        style=discord.TextStyle.paragraph,
        placeholder="make it a watercolor --ar 16:9",
        custom_id="prompt",
        max_length=2000,
    )

    def __init__(
        self,
        title: str,
        on_submit: Callable[[discord.Interaction[Any], str, str | None], Awaitable[None]],
        *,
        default: str = "",
        models: Sequence[tuple[str, str]] = (),
        model: str | None = None,
    ) -> None:
        super().__init__(title=title, timeout=15 * 60)
        self.prompt.label = _(PROMPT_LABEL)  # in the language of the one it opens for
        self.prompt.default = default or None
        self._on_submit = on_submit
        # A model select (named models, bot.credits.models) only when there is a choice:
        # (value, label) pairs, ``model`` preselected (the job an Edit again continues).
        self.model: discord.ui.Select[PromptModal] | None = None
        if models:
            self.model = discord.ui.Select(
                custom_id="model",
                required=False,
                options=[
                    discord.SelectOption(label=label, value=value, default=value == model)
                    for value, label in models
                ],
            )
            self.add_item(discord.ui.Label(text=_("Model"), component=self.model))

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return await _speak(interaction)

    async def on_submit(self, interaction: discord.Interaction[Any], /) -> None:
        chosen = self.model.values[0] if self.model is not None and self.model.values else None
        await self._on_submit(interaction, self.prompt.value, chosen)
