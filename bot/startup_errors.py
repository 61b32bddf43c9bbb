"""One sentence for the failures an operator meets at start: the database cannot be
reached, is locked, or the disk is full (issue 29).

Without this the CLI printed 150 lines of asyncpg and SQLAlchemy traceback for a
PostgreSQL that was not running. ``describe`` finds the cause in the exception chain
and says what it is and what to do; the CLI prints the traceback only with ``--debug``.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
import traceback
from urllib.parse import urlsplit

# Where a traceback must pass for an OS error to be the database's (not a provider's).
_STORAGE_FRAMES = ("asyncpg", "sqlalchemy", "aiosqlite", "bot/storage", "alembic")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _through_storage(exc: BaseException) -> bool:
    for link in _chain(exc):
        for frame in traceback.extract_tb(link.__traceback__):
            if any(part in frame.filename for part in _STORAGE_FRAMES):
                return True
    return False


def _where(url: str) -> str:
    """The database's address without its password."""
    if url.startswith("sqlite"):
        return url.split(":///", 1)[-1] or url
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def describe(exc: BaseException, storage_url: str) -> str | None:
    """The operator's sentence for ``exc``, or None when it is not a failure of theirs."""
    where = _where(storage_url)
    for link in _chain(exc):
        text = str(link).lower()
        if (isinstance(link, OSError) and link.errno == errno.ENOSPC) or "disk is full" in text:
            return (
                "the disk is full: free space where storage.url and storage.data_dir point "
                "(or lower storage.keep_images_hours), then start again"
            )
        if isinstance(link, sqlite3.OperationalError) or type(link).__name__ == (
            "OperationalError"
        ):
            if "database is locked" in text:
                return (
                    f"the SQLite database {where} is locked by another process: SQLite serves "
                    "one bot process; stop the other one (or its stuck transaction), or use "
                    "PostgreSQL for several (docs/operations.md)"
                )
            if "unable to open database file" in text:
                return (
                    f"cannot open the SQLite database {where}: its directory must exist and be "
                    "writable by this user (storage.url, KONTEXT_STORAGE__URL)"
                )
        name = type(link).__name__
        if name == "InvalidPasswordError":
            return (
                f"PostgreSQL at {where} refused the user or password in storage.url "
                "(KONTEXT_STORAGE__URL): check them"
            )
        if name == "InvalidCatalogNameError":
            return (
                f"PostgreSQL has no database {where}: create it (createdb) or fix the name "
                "in storage.url"
            )
    if not _through_storage(exc):
        return None
    for link in _chain(exc):
        if isinstance(link, socket.gaierror):
            return (
                f"cannot resolve the database host of {where} (storage.url): check the host "
                "name (in Compose: the service name, e.g. postgres)"
            )
        if isinstance(link, ConnectionRefusedError):
            return (
                f"nothing accepts connections at {where} (storage.url): is PostgreSQL "
                "running and listening there?"
            )
        if isinstance(link, TimeoutError):
            return f"the database at {where} did not answer in time (storage.url): is it up?"
        if isinstance(link, OSError):
            return f"cannot reach the database at {where} (storage.url): {link.strerror or link}"
    return None
