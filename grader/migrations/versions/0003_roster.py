"""The class roster: every student the LMS lists, keyed by the LMS id.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lms_id", sa.String, nullable=False, unique=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("email", sa.String, nullable=False),
        sa.Column("section", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("roster")
