"""The Home tab in Block Kit (issue 28): what ``Conversation.home`` decided, laid out.

Slack shows a published Home tab until the app publishes another
(https://docs.slack.dev/surfaces/app-home); it is published each time the person opens
it (``app_home_opened`` with ``tab: home``) and after they start an edit from it, so it
is never older than their last visit. Its limits are Slack's for every view: at most 100
blocks, 3,000 characters of section text, 75 of a button's text
(https://docs.slack.dev/reference/block-kit/blocks); the screen stays far inside them
(five edits of two blocks each), and each text is cut to its limit on the way out.
"""

from __future__ import annotations

from typing import Any

from adapters.slack.views import EDIT_AGAIN_ACTION_ID, NEW_EDIT_ACTION_ID, REROLL_ACTION_ID
from bot.chat import texts
from bot.chat.home import HomeEdit, HomeScreen
from bot.i18n import _

# A link button still sends a block_actions payload, which the app must acknowledge.
DASHBOARD_ACTION_ID = "kontext_dashboard"
SECTION_TEXT = 3000  # https://docs.slack.dev/reference/block-kit/blocks/section-block
HEADER_TEXT = 150  # https://docs.slack.dev/reference/block-kit/blocks/header-block
ALT_TEXT = 2000  # https://docs.slack.dev/reference/block-kit/block-elements/image-element


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT]}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:HEADER_TEXT]}}


def _button(label: str, action_id: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": label[:75]},
        "value": value,
        **extra,
    }


def _edit_blocks(edit: HomeEdit) -> list[dict[str, Any]]:
    """An edit's line with the posted result as its thumbnail (the image element's
    ``slack_file`` names the file by id; no public URL is needed,
    https://docs.slack.dev/reference/block-kit/composition-objects/slack-file-object),
    then its Re-roll and Edit again."""
    section = _section(edit.text)
    if edit.file_id:
        section["accessory"] = {
            "type": "image",
            "slack_file": {"id": edit.file_id},
            "alt_text": _(texts.HOME_THUMBNAIL)[:ALT_TEXT],
        }
    blocks = [section]
    if edit.buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"edit:{edit.job_id}",
                "elements": [
                    _button(_(texts.HOME_REROLL), REROLL_ACTION_ID, edit.job_id),
                    _button(_(texts.HOME_EDIT_AGAIN), EDIT_AGAIN_ACTION_ID, edit.job_id),
                ],
            }
        )
    return blocks


def home_view(screen: HomeScreen) -> dict[str, Any]:
    """The Home tab's view for views.publish."""
    blocks: list[dict[str, Any]] = [
        _header(_(texts.HOME_TITLE)),
        _section(screen.credits),
        {
            "type": "actions",
            "block_id": "new_edit",
            "elements": [
                _button(_(texts.HOME_NEW_EDIT), NEW_EDIT_ACTION_ID, "new", style="primary")
            ],
        },
        {"type": "divider"},
        _header(_(texts.HOME_EDITS_TITLE)),
    ]
    if screen.empty:
        blocks.append(_section(screen.empty))
    for edit in screen.edits:
        blocks += _edit_blocks(edit)
    if screen.admin is not None:
        blocks += [{"type": "divider"}, _header(_(texts.HOME_ADMIN_TITLE))]
        blocks.append(_section(screen.admin.text))
        if screen.admin.dashboard_url:
            link = _button(
                _(texts.HOME_DASHBOARD),
                DASHBOARD_ACTION_ID,
                "dashboard",
                url=screen.admin.dashboard_url,
            )
            blocks.append({"type": "actions", "block_id": "dashboard", "elements": [link]})
    return {"type": "home", "blocks": blocks}
