"""Autograder for PyTorch automatic-differentiation notebooks.

`check_notebooks(paths, config)` grades notebooks and returns a `NotebookResult` per notebook;
`load_config()` reads the course's settings. In a student's notebook, `from grader import check;
check()` prints `grader check`'s report on the saved notebook (`grader.notebook_check`).
"""

from __future__ import annotations

from typing import Any

from grader.config import Config, load_config
from grader.errors import GraderError
from grader.results import CheckResult, NotebookResult

__all__ = [
    "CheckResult",
    "Config",
    "GraderError",
    "NotebookResult",
    "check",
    "check_notebooks",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: `grader assign`, the CLI's start and a notebook's kernel stay lean.
    if name == "check_notebooks":
        from grader.grading import check_notebooks

        return check_notebooks
    if name == "check":  # in a notebook, where the pipeline module `grader.check` is not loaded
        from grader.notebook_check import check

        return check
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
