"""Late work and manual grading: the LMS's late mark and a removal time per submission, and the
instructor's actions (overrides, excuses, comments, removals), each kept with who, when and why.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as table:  # batch: SQLite alters by copying
        table.add_column(
            sa.Column("lms_late", sa.Boolean, nullable=False, server_default=sa.false())
        )
        table.add_column(sa.Column("removed_at", sa.DateTime, nullable=True))
    op.create_table(
        "grading_actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("student", sa.String, nullable=False, index=True),
        sa.Column("notebook", sa.String, nullable=False),
        sa.Column("target", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("by", sa.String, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("grading_actions")
    with op.batch_alter_table("submissions") as table:
        table.drop_column("removed_at")
        table.drop_column("lms_late")
