"""Slack: slash command with a file modal, message shortcut, mentions with files."""

from adapters.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
