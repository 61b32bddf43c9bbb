"""The tables. Alembic migrations in ``bot/migrations`` create exactly these.

Times are UTC epoch seconds (double precision): portable between SQLite and PostgreSQL
and free of time-zone surprises in comparisons such as lease expiry.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

Timestamp = Float(precision=53)
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a ledger.
LedgerId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    # One row per user: the row that reservations lock, so that two requests of the
    # same user are serialised while different users proceed in parallel.
    Column("user_ref", String(200), primary_key=True),
    Column("created_at", Timestamp, nullable=False),
)

ledger = Table(
    "ledger",
    metadata,
    Column("id", LedgerId, primary_key=True, autoincrement=True),
    Column("user_ref", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("job_id", String(32), nullable=True),
    # Makes each step idempotent: "reserve:<job>", "charge:<job>", "refund:<job>",
    # "allowance:<user>:<period>". NULL for entries that may repeat (manual grants).
    Column("dedupe_key", String(300), nullable=True, unique=True),
    Column("actor", String(200), nullable=True),
    Column("note", Text, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Index(None, "user_ref", "id"),
    Index(None, "job_id"),
    # The dashboard's reads by time (migration 0007).
    Index(None, "created_at", "id"),
)

policies = Table(
    "policies",
    metadata,
    # What admins set at run time, per scope ("workspace:slack:T0123",
    # "channel:discord:9876:555", "role:discord:9876:777", "user:discord:9876:1234"):
    # an allowance override and/or a pause. Rows outlive restarts; config only seeds.
    Column("scope", String(300), primary_key=True),
    Column("allowance", Integer, nullable=True),
    Column("period", String(16), nullable=True),
    Column("paused", Integer, nullable=False, server_default="0"),
    # Only on the "global" row: the operator's limits, changed at run time.
    Column("max_balance", Integer, nullable=True),
    Column("budget", Integer, nullable=True),
    Column("cooldown_seconds", Timestamp, nullable=True),
    Column("per_user_concurrent", Integer, nullable=True),
    # Restricted models (bot.credits.models) allowed in this scope, comma-separated; NULL: none.
    Column("models", Text, nullable=True),
    # The language an admin set for a workspace scope (bot.i18n; migration 0011); NULL:
    # each person's own (the platform's locale, else ``[i18n] default``).
    Column("language", String(16), nullable=True),
    Column("updated_by", String(200), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("idempotency_key", String(300), nullable=False, unique=True),
    Column("user_ref", String(200), nullable=False),
    Column("platform", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("attachments", JSON, nullable=False),
    Column("reply_target", JSON, nullable=False),
    Column("cost", Integer, nullable=False),
    Column("provider", String(32), nullable=False),
    Column("model", String(128), nullable=False),
    # The named model (``--model NAME``, bot.credits.models) the job was asked with and charged
    # for; NULL for jobs stored before named models (the default one).
    Column("model_name", String(64), nullable=True),
    Column("prediction_id", String(200), nullable=True),
    # Set just before the create request leaves: after a crash, a job with this set and
    # no prediction id may or may not exist at the provider, so it is never resubmitted.
    Column("submit_started_at", Timestamp, nullable=True),
    Column("output_path", Text, nullable=True),
    # ``Job.output_meta`` in Python: the downloaded output's content type, width and
    # height (the column keeps its first name; renaming it would need a migration).
    Column("result", JSON, nullable=True),
    Column("error_kind", String(32), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    # A queued job is not taken before this time (the provider asked us to back off).
    Column("not_before", Timestamp, nullable=True),
    Column("lease_expires_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("started_at", Timestamp, nullable=True),
    Column("finished_at", Timestamp, nullable=True),
    # The requester or an admin asked to cancel the job while it ran (migration 0009): the
    # process running it asks the provider to stop and refunds when it has.
    Column("cancel_requested_at", Timestamp, nullable=True),
    # The language the request was answered in (bot.i18n; migration 0011): the result,
    # the progress and a failure speak it too. NULL: ``[i18n] default``.
    Column("locale", String(16), nullable=True),
    # Variations (``--n``, migration 0012): the jobs of one request share ``group_id``;
    # ``group_index`` (1-based) of ``group_size``. ``group_state``: a finished member
    # "waiting" for its siblings (not claimed again), "posting" the group (its lease is
    # the poster's), "posted" (bot.groups decides, under the group's row locks).
    Column("group_id", String(32), nullable=True),
    Column("group_index", Integer, nullable=True),
    Column("group_size", Integer, nullable=True),
    Column("group_state", String(16), nullable=True),
    Index(None, "state", "created_at"),
    Index(None, "user_ref", "state"),
    # A user's history, newest first (migration 0008).
    Index(None, "user_ref", "created_at"),
    # The dashboard's reads by time (migration 0007).
    Index(None, "created_at"),
    # A group's members, read and locked together (migration 0012).
    Index(None, "group_id"),
)
