"""Slack: slash command with a file modal, message shortcut, mentions with files.

The adapter lives in ``adapter.py``; ``platform.py`` is its entry in the registry,
which imports the SDK only when the platform is enabled.
"""
