"""The Block Kit of the bot: the edit modal and reading its submission.

A slash command cannot carry a file, so ``/kontext`` opens this modal with a
``file_input``; the message shortcut opens the same modal without it (the message's
image is the input). Where to answer travels in ``private_metadata``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.chat.presets import ResultLayout
from bot.chat.texts import HOME_NOTICE_CLOSE, MORE_PLACEHOLDER
from bot.domain import EditOptions
from bot.i18n import _

CALLBACK_ID = "kontext_edit"
# A static select holds at most 100 options
# (https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element).
MAX_SELECT_OPTIONS = 100
SHORTCUT_CALLBACK_ID = "kontext_edit_message"
# The Cancel button of a queued job's acknowledgement (bot.jobs.cancellation).
CANCEL_ACTION_ID = "kontext_cancel"
IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "webp"]
# The result buttons (the Home tab's last edits): the job id is the value, so they work
# after a restart; they mean what Discord's Re-roll and Edit again mean (bot.conversation).
REROLL_ACTION_ID = "kontext_reroll"
EDIT_AGAIN_ACTION_ID = "kontext_edit_again"
# The Home tab's "New edit": the modal with a channel picker for where the result goes.
NEW_EDIT_ACTION_ID = "kontext_new_edit"
CHANNEL_BLOCK = "channel"


def _option(value: str) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": value}, "value": value}


def edit_modal(
    *,
    metadata: dict[str, Any],
    prompt: str,
    options: EditOptions,
    with_file_input: bool,
    aspect_ratios: tuple[str, ...],
    models: Sequence[tuple[str, str]] = (),
    default_model: str | None = None,
    max_files: int = 1,
    presets: Sequence[tuple[str, str]] = (),
    max_count: int = 1,
    channel_label: str | None = None,
) -> dict[str, Any]:
    """``max_files``: the most images the configured models take (Slack's file_input
    allows 1-10, https://docs.slack.dev/reference/block-kit/block-elements/file-input-element).
    ``presets``: (name, label) of the presets in force, offered as a select; with one
    chosen the prompt may stay empty (the preset's instruction is the prompt).
    ``channel_label``: opened from the Home tab, which is in no channel: a channel picker
    with this label chooses where the result goes (the submission checks that the bot
    is there; a conversations_select cannot filter by the bot's membership,
    https://docs.slack.dev/reference/block-kit/composition-objects/conversation-filter-object)."""
    blocks: list[dict[str, Any]] = []
    if channel_label:
        blocks.append(
            {
                "type": "input",
                "block_id": CHANNEL_BLOCK,
                "label": {"type": "plain_text", "text": channel_label},
                "element": {
                    "type": "conversations_select",
                    "action_id": "value",
                    "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                },
            }
        )
    if with_file_input:
        blocks.append(
            {
                "type": "input",
                "block_id": "image",
                "optional": True,
                "label": {"type": "plain_text", "text": _("Image to edit (none: make one)")},
                "element": {
                    "type": "file_input",
                    "action_id": "file",
                    "filetypes": IMAGE_EXTENSIONS,
                    "max_files": max(1, min(max_files, 10)),
                },
            }
        )
    prompt_element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "text",
        "multiline": True,
        "placeholder": {"type": "plain_text", "text": "make it a watercolor"},
    }
    if prompt:
        prompt_element["initial_value"] = prompt
    ratio_element: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "options": [_option(ratio) for ratio in aspect_ratios],
    }
    if options.aspect_ratio:
        ratio_element["initial_option"] = _option(options.aspect_ratio)
    seed_element: dict[str, Any] = {
        "type": "number_input",
        "action_id": "value",
        "is_decimal_allowed": False,
        "min_value": "0",
        "max_value": "4294967295",
    }
    if options.seed is not None:
        seed_element["initial_value"] = str(options.seed)
    blocks += [
        {
            "type": "input",
            "block_id": "prompt",
            "optional": bool(presets),
            "label": {"type": "plain_text", "text": _("What should change?")},
            "element": prompt_element,
        },
        {
            "type": "input",
            "block_id": "ratio",
            "optional": True,
            "label": {"type": "plain_text", "text": _("Aspect ratio")},
            "element": ratio_element,
        },
        {
            "type": "input",
            "block_id": "seed",
            "optional": True,
            "label": {"type": "plain_text", "text": _("Seed (same seed, same result)")},
            "element": seed_element,
        },
        {
            "type": "input",
            "block_id": "format",
            "label": {"type": "plain_text", "text": _("Format")},
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [_option("png"), _option("jpg")],
                "initial_option": _option(options.output_format),
            },
        },
    ]
    if models:
        blocks.append(model_block(models, options.model or default_model))
    if presets:
        blocks.append(preset_block(presets))
    if max_count > 1:
        blocks.append(count_block(max_count, options.count))
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "title": {"type": "plain_text", "text": _("Edit with Kontext")},
        "submit": {"type": "plain_text", "text": _("Edit")},
        "close": {"type": "plain_text", "text": _("Cancel")},
        "blocks": blocks,
    }


def model_block(models: Sequence[tuple[str, str]], chosen: str | None) -> dict[str, Any]:
    """The named models (bot.credits.models) as a select, only shown when there is a choice:
    (value, label) pairs, ``chosen`` preselected."""
    options = [
        {"text": {"type": "plain_text", "text": label}, "value": value} for value, label in models
    ]
    element: dict[str, Any] = {"type": "static_select", "action_id": "value", "options": options}
    initial = next((o for o in options if o["value"] == chosen), None)
    if initial is not None:
        element["initial_option"] = initial
    return {
        "type": "input",
        "block_id": "model",
        "optional": True,
        "label": {"type": "plain_text", "text": _("Model")},
        "element": element,
    }


def preset_block(presets: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The presets (bot.chat.presets) as an optional select: the chosen one's
    instruction is applied, the prompt's words added to it. A static select lists at
    most 100 options (MAX_SELECT_OPTIONS); the config holds fewer (Discord's 25)."""
    options = [
        {"text": {"type": "plain_text", "text": label[:75]}, "value": name}
        for name, label in presets[:MAX_SELECT_OPTIONS]
    ]
    return {
        "type": "input",
        "block_id": "preset",
        "optional": True,
        "label": {"type": "plain_text", "text": _("Preset")},
        "element": {"type": "static_select", "action_id": "value", "options": options},
    }


def count_block(most: int, chosen: int) -> dict[str, Any]:
    """Variations (``--n``, issue 27): how many images one request makes, 1 to ``most``
    (``jobs.max_variations``), ``chosen`` preselected (a typed ``--n`` that opened the
    modal)."""
    options = [_option(str(n)) for n in range(1, most + 1)]
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": "value",
        "options": options,
        "initial_option": _option(str(min(max(chosen, 1), most))),
    }
    return {
        "type": "input",
        "block_id": "count",
        "optional": True,
        "label": {
            "type": "plain_text",
            "text": _("Variations (each its own seed, charged on its own)"),
        },
        "element": element,
    }


@dataclass(frozen=True)
class Submission:
    prompt: str
    aspect_ratio: str | None
    seed: int | None
    output_format: str | None
    files: tuple[dict[str, Any], ...]
    metadata: dict[str, Any]
    model: str | None = None
    preset: str | None = None
    count: int | None = None
    channel: str | None = None  # the channel picker's choice (opened from the Home tab)


def read_submission(view: dict[str, Any]) -> Submission:
    values: dict[str, Any] = view.get("state", {}).get("values", {})

    def value(block: str, action: str) -> dict[str, Any]:
        found = values.get(block, {}).get(action)
        return found if isinstance(found, dict) else {}

    selected_ratio = value("ratio", "value").get("selected_option") or {}
    selected_format = value("format", "value").get("selected_option") or {}
    selected_model = value("model", "value").get("selected_option") or {}
    selected_preset = value("preset", "value").get("selected_option") or {}
    selected_count = str((value("count", "value").get("selected_option") or {}).get("value", ""))
    seed_text = value("seed", "value").get("value")
    files = value("image", "file").get("files") or []
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except json.JSONDecodeError:
        metadata = {}
    return Submission(
        prompt=value("prompt", "text").get("value") or "",
        aspect_ratio=selected_ratio.get("value"),
        seed=int(seed_text) if seed_text not in (None, "") else None,
        output_format=selected_format.get("value"),
        files=tuple(f for f in files if isinstance(f, dict) and "id" in f),
        metadata=metadata if isinstance(metadata, dict) else {},
        model=selected_model.get("value"),
        preset=selected_preset.get("value"),
        count=int(selected_count) if selected_count.isdigit() else None,
        channel=value(CHANNEL_BLOCK, "value").get("selected_conversation") or None,
    )


def cancel_blocks(text: str, job_id: str) -> list[dict[str, Any]]:
    """The acknowledgement of a queued job with its Cancel button; the job id is the
    button's value, so it works after a restart (the job is in storage)."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": CANCEL_ACTION_ID,
                    "text": {"type": "plain_text", "text": _("Cancel")},
                    "value": job_id,
                }
            ],
        },
    ]


# -- a result's buttons (issue 27) ------------------------------------------------------------

# The action ids of a result's buttons; a preset's is ``kontext_preset:<name>`` and the
# More… select's block id carries the job (``kontext_result:<job id>``).
RESULT_REROLL_ACTION_ID = "kontext_result_reroll"
AGAIN_ACTION_ID = "kontext_result_again"
UPSCALE_ACTION_ID = "kontext_result_upscale"
PRESET_ACTION_PREFIX = "kontext_preset:"
MORE_ACTION_ID = "kontext_more"
DELETE_ACTION_ID = "kontext_delete"
RESULT_BLOCK_PREFIX = "kontext_result:"
# An actions block holds at most 25 elements
# (https://docs.slack.dev/reference/block-kit/blocks/actions-block); the config refuses
# a [results] list that would not fit (bot.chat.presets).
MAX_ACTIONS_ELEMENTS = 25
_SLACK_BUTTONS = {
    "reroll": RESULT_REROLL_ACTION_ID,
    "edit": AGAIN_ACTION_ID,
    "upscale": UPSCALE_ACTION_ID,
    "delete": DELETE_ACTION_ID,
}


def result_blocks(text: str, job_id: str, layout: ResultLayout) -> list[dict[str, Any]]:
    """The finished job's status line with the result's buttons (the conversation
    layer's layout): Re-roll, Edit again, the listed presets, Delete (the result's file,
    files.delete) and the More… select. The job id is each button's value, so they work
    after a restart. Upscale only when an upscale model is configured (the layout says)."""
    elements: list[dict[str, Any]] = []
    for button in layout.buttons:
        if button.action == "preset" and button.preset:
            action_id = PRESET_ACTION_PREFIX + button.preset
        elif button.action in _SLACK_BUTTONS:
            action_id = _SLACK_BUTTONS[button.action]
        else:
            continue
        label = f"{button.emoji} {button.shown_label()}".strip()
        element: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label[:75], "emoji": True},
            "value": job_id,
        }
        if action_id == DELETE_ACTION_ID:
            element["style"] = "danger"
        elements.append(element)
    if layout.more:
        elements.append(
            {
                "type": "static_select",
                "action_id": MORE_ACTION_ID,
                "placeholder": {"type": "plain_text", "text": _(MORE_PLACEHOLDER)},
                "options": [
                    {"text": {"type": "plain_text", "text": label[:75]}, "value": name}
                    for name, label in layout.more_options()[:MAX_SELECT_OPTIONS]
                ],
            }
        )
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if elements:
        blocks.append(
            {
                "type": "actions",
                "block_id": RESULT_BLOCK_PREFIX + job_id,
                "elements": elements[:MAX_ACTIONS_ELEMENTS],
            }
        )
    return blocks


def notice_modal(text: str) -> dict[str, Any]:
    """A modal that only says something: the answer to a button on the Home tab, which
    is in no channel (no ephemeral message, no response_url to answer through). A
    modal's title holds at most 24 characters
    (https://docs.slack.dev/reference/views/modal-views)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Kontext"},
        "close": {"type": "plain_text", "text": _(HOME_NOTICE_CLOSE)[:24]},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
    }
