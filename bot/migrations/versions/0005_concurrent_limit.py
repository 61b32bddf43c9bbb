"""The cap on one user's jobs running at once (jobs.per_user_concurrent) can be changed
at run time too, on the "global" policy row like the other limits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("per_user_concurrent", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("per_user_concurrent")
