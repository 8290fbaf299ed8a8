"""The first gradebook: students, submissions, their TO DO code, runs and check results.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "students",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
    )
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("notebook", sa.String, nullable=False),
        sa.Column("file", sa.String, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("submitted_at", sa.DateTime, nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("student_id", "notebook", "sha256"),
    )
    op.create_index("ix_submissions_student_id", "submissions", ["student_id"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False),
        sa.Column("grade_id", sa.String, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )
    op.create_index("ix_answers_submission_id", "answers", ["submission_id"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False),
        sa.Column("graded_at", sa.DateTime, nullable=False),
        sa.Column("grader_version", sa.String, nullable=False),
        sa.Column("course_version", sa.String, nullable=False),
        sa.Column("device", sa.String, nullable=False),
        sa.Column("isolation", sa.Text, nullable=False),
        sa.Column("seeds", sa.JSON, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("notices", sa.JSON, nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
    )
    op.create_index("ix_runs_submission_id", "runs", ["submission_id"])
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("grade_id", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("points", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_check_results_run_id", "check_results", ["run_id"])


def downgrade() -> None:
    for table in ("check_results", "runs", "answers", "submissions", "students"):
        op.drop_table(table)
