"""Autograder for PyTorch automatic-differentiation notebooks.

`check_notebooks(paths, config)` grades notebooks and returns a `NotebookResult` per notebook;
`load_config()` reads the course's settings.
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
    "check_notebooks",
    "load_config",
]


def __getattr__(name: str) -> Any:
    # The grading pipeline is imported on first use: `grader assign` and the CLI's start stay lean.
    if name == "check_notebooks":
        from grader.grading import check_notebooks

        return check_notebooks
    raise AttributeError(f"module 'grader' has no attribute {name!r}")
