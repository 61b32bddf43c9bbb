"""Storage: SQLAlchemy 2 async Core on SQLite (embedded default) or PostgreSQL."""

from bot.storage.database import Database, open_database

__all__ = ["Database", "open_database"]
