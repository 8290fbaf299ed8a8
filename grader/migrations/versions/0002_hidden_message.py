"""The hidden variant's own message per check, kept for the instructor only.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("check_results") as table:
        table.add_column(sa.Column("hidden_message", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("check_results") as table:
        table.drop_column("hidden_message")
