"""The bot's languages (issue 28): an admin may set a server's or workspace's language
(``policies.language``), and a job keeps the language its request was answered in
(``jobs.locale``), so its result and its failure speak it too, after a restart as well.

Revision ID: 0011
Revises: 0009 (the lead orders the chain when the branches meet)
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("language", sa.String(16), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("locale")
    with op.batch_alter_table("policies") as batch:
        batch.drop_column("language")
