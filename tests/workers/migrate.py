"""A bot process starting up on a database (for the start-together test):
``python -m tests.workers.migrate BARRIER_FD [kontext-bot arguments...]``.

Everything is imported first; then the process says it is ready and blocks reading the
barrier pipe it inherited, until the test closes the pipe's write end: one event that
releases all of its processes at the same moment,
and only then runs ``kontext-bot`` (by default ``kontext-bot migrate``, the same
``migrate`` that ``kontext-bot run`` calls at start-up) with the storage URL from
``KONTEXT_STORAGE__URL``.
"""

from __future__ import annotations

import logging
import os
import sys

import aiosqlite  # noqa: F401  (imported before the barrier, as said above)
import alembic.command  # noqa: F401
import asyncpg  # noqa: F401

import bot.storage.database  # noqa: F401
from bot.cli import main

if __name__ == "__main__":
    # The bot keeps Alembic's own lines quiet; this process shows which steps it applied
    # ("Running upgrade  -> 0001, ...") so the test can count who migrated.
    steps = logging.getLogger("alembic.runtime.migration")
    steps.setLevel(logging.INFO)
    steps.addHandler(logging.StreamHandler(sys.stderr))
    steps.propagate = False
    barrier = int(sys.argv[1])
    print("ready", flush=True)
    os.read(barrier, 1)  # returns (empty) when the test closes the write end
    sys.exit(main(sys.argv[2:] or ["migrate"]))
