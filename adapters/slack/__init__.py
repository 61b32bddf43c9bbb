"""Slack: slash command with a file modal, message shortcut, mentions with files.

The adapter is imported on first use, so the platform registry can read this package's
entry (``platform.py``) without slack_bolt installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]


def __getattr__(name: str) -> Any:
    if name == "SlackAdapter":
        from adapters.slack.adapter import SlackAdapter

        return SlackAdapter
    raise AttributeError(name)
