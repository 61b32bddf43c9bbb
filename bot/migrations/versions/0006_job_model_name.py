"""Named models (``[[models]]``): a job stores the model name it was asked with and
charged for, and a scope's stored policy may allow restricted models.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("model_name", sa.String(64), nullable=True))
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("models", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("models")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("model_name")
