"""Autograder for PyTorch automatic-differentiation notebooks."""

from __future__ import annotations

from grader.config import Config, load_config
from grader.errors import GraderError
from grader.results import CheckResult, NotebookResult

__all__ = ["CheckResult", "Config", "GraderError", "NotebookResult", "load_config"]
