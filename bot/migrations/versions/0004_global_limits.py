"""The operator's limits can be changed at run time too: a "global" policy row carries
the balance cap, the shared budget and the cooldown (and can override the allowance).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("max_balance", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cooldown_seconds", sa.Float(precision=53), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("cooldown_seconds")
        batch.drop_column("budget")
        batch.drop_column("max_balance")
