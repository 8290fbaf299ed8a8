"""`python -m grader`: the `grader` command (what `check()` in a notebook runs)."""

from grader.cli import run

run()
