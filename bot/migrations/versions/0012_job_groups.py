"""Variations (``--n``, issue 27): the jobs one request makes form a group, posted
together once the last one ends; the membership and each member's place in the group's
delivery are stored with the jobs, so a restart posts the group once.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("group_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("group_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("group_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("group_state", sa.String(16), nullable=True))
        batch.create_index("ix_jobs_group_id", ["group_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_group_id")
        batch.drop_column("group_state")
        batch.drop_column("group_size")
        batch.drop_column("group_index")
        batch.drop_column("group_id")
