"""The migrations create exactly the schema the code uses."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.storage import Database
from bot.storage.schema import metadata


async def test_migrated_schema_matches_metadata(db: Database) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn)
        return compare_metadata(context, metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrating_twice_is_harmless(db_url: str) -> None:
    from bot.storage.database import migrate

    await migrate(db_url)
    await migrate(db_url)
