"""Alembic migrations of the gradebook schema (applied by `grader.gradebook`, never by hand)."""
