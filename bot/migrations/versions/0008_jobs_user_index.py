"""A user's recent jobs (``/kontext history``) are read newest first by user: an index on
(user_ref, created_at) answers that from the index alone, however many jobs the user
and everyone else have.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_user_ref_created_at", "jobs", ["user_ref", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_user_ref_created_at", table_name="jobs")
