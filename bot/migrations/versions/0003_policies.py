"""Policies admins change at run time: allowance overrides and pauses per scope.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("scope", sa.String(300), nullable=False),
        sa.Column("allowance", sa.Integer(), nullable=True),
        sa.Column("period", sa.String(16), nullable=True),
        sa.Column("paused", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float(precision=53), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_policies")),
    )


def downgrade() -> None:
    op.drop_table("policies")
