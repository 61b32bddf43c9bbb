"""Discord: /kontext and friends through discord.py's app commands, views and cogs.

The adapter lives in ``adapter.py``; ``platform.py`` is its entry in the registry,
which imports the SDK only when the platform is enabled.
"""
