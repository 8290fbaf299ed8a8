"""Hostile submissions, graded in the miniature course of tests/conftest.py.

A hostile cell placed in `first` must cost exactly the `first` check and leave the `second`
check, the other notebook of the batch, the machine and the file system untouched.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.config import Config
from grader.grading import check_notebooks
from grader.results import NotebookResult
from grader.sandbox import RUN_ROOT


def grade(course: Config, *paths: Path) -> list[NotebookResult]:
    return check_notebooks(list(paths), course)


def messages(result: NotebookResult) -> dict[str, str]:
    return {check.grade_id: check.message for check in result.checks if not check.passed}


def _kernel_processes() -> dict[int, str]:
    pattern = "ipykernel_launcher|grader-jail|grader.zygote|sleep 1000"
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    lines = [line.split(" ", 1) for line in out.stdout.splitlines()]
    return {int(pid): command[:120] for pid, command in lines}


def _new_processes(before: dict[int, str], grace: float = 3.0) -> dict[int, str]:
    """Processes that appeared since `before` and are still there after a short grace period
    (a killed process may take a moment to be gone)."""
    deadline = time.monotonic() + grace
    while True:
        new = {pid: cmd for pid, cmd in _kernel_processes().items() if pid not in before}
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


def _run_dirs() -> set[str]:
    return {name for name in os.listdir(RUN_ROOT) if name.startswith("grader-run-")}


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Every hostile case must leave no process and no run directory behind."""
    processes, directories = _kernel_processes(), _run_dirs()
    yield
    assert _new_processes(processes) == {}, "a process outlived its grading"
    assert _run_dirs() - directories == set(), "a run directory was left behind"
