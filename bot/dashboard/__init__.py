"""The operator's dashboard: spend, budget, jobs and the ledger in a password-protected
web page served by the bot itself (``[dashboard]``, docs/operations.md)."""

from bot.dashboard.app import DashboardServer

__all__ = ["DashboardServer"]
