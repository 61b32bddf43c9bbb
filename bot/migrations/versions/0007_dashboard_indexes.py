"""Indexes for the dashboard's time-bounded reads (bot/dashboard/queries.py): the ledger
by time (spend per day, this period's budget and top spenders, the CSV export resumed by
(created_at, id)) and the jobs by time (outcomes per day, the recent jobs). Without them
each of those reads every row of a year's ledger (bench/dashboard.py).

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ledger_created_at_id", "ledger", ["created_at", "id"])
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created_at", table_name="jobs")
    op.drop_index("ix_ledger_created_at_id", table_name="ledger")
