"""A terminal front end: one edit from the command line through the same core."""

from adapters.console.frontend import ConsoleFrontend, ConsoleReply
from adapters.console.main import run_console

__all__ = ["ConsoleFrontend", "ConsoleReply", "run_console"]
