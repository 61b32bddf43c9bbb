"""``kontext-bot backup PATH``: a consistent copy of the SQLite database while the bot runs.

The image has no ``sqlite3`` tool, and copying ``kontext.db`` by hand while the bot
writes can miss its ``-wal`` file (issue 29). Python's ``sqlite3`` module carries
SQLite's online backup API, which copies a consistent snapshot page by page while
other connections keep writing. PostgreSQL is backed up with its own ``pg_dump``
(docs/operations.md, "Backup"); this command says so instead of guessing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.errors import UserInputError

PG_DUMP_HINT = (
    "PostgreSQL is backed up with pg_dump, e.g. "
    "`docker compose exec -T postgres pg_dump -U kontext -Fc kontext > kontext.dump` "
    "(docs/operations.md, Backup)"
)


def backup_sqlite(url: str, target: Path) -> int:
    """Copy the database at ``url`` to ``target`` (a new file); returns its size in bytes."""
    if not url.startswith("sqlite"):
        raise UserInputError(PG_DUMP_HINT)
    database = make_url(url).database
    if not database or database == ":memory:":
        raise UserInputError("storage.url names no database file to back up")
    source_path = Path(database).expanduser()
    if not source_path.is_file():
        raise UserInputError(f"there is no database at {source_path} yet (storage.url)")
    if target.exists():
        raise UserInputError(f"{target} exists; give a new file name (nothing is overwritten)")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Read-only on the source: a backup never changes the live database.
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    return target.stat().st_size
