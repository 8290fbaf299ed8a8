"""A miniature course for hostile submissions: tiny notebooks, so that each case runs fast.

Its two TO DO cells are independent: `first` defines `answer` (21 * scale), `second` defines
`double(x)`. A hostile cell placed in `first` must cost exactly the `first` check and leave the
`second` check, the other notebook of the batch, the machine and the file system untouched.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbformat import NotebookNode

from grader.assign import assign
from grader.config import Config, load_config
from grader.grading import check_notebooks
from grader.results import NotebookResult
from grader.sandbox import RUN_ROOT
from tests.conftest import make_cell, make_notebook, write

CHECKS = """
import pytest

VALUES = ["answer"]


def hidden_parameters(parameters, rng):
    return {"scale": 3.0}


def calls(parameters, rng):
    from grader.extract import Call
    return [Call("double", [(1.5,), (-4,)])]


@pytest.mark.grade("first", points=1)
def test_answer(student, reference):
    assert student.value("answer") == reference.value("answer"), "wrong answer"


@pytest.mark.grade("second", points=1)
def test_double(student):
    for case in student.cases("double"):
        assert case.error is None and case.output == 2 * case.args[0], "double is wrong"
"""


def mini_solution(
    first: str = "answer = 21 * scale", second: str = "def double(x):\n    return 2 * x"
) -> NotebookNode:
    """The mini solution notebook, with the given code in its two TO DO cells."""
    return make_notebook(
        [
            make_cell("import math", "imports"),
            make_cell("seed = 0\ndevice = 'cpu'\nscale = 2.0", "parameters", tags=["parameters"]),
            make_cell(f"### BEGIN SOLUTION\n{first}\n### END SOLUTION", "first", todo=True),
            make_cell("between = 1", "between"),
            make_cell(f"### BEGIN SOLUTION\n{second}\n### END SOLUTION", "second", todo=True),
        ]
    )


@pytest.fixture(scope="session")
def mini_course(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("mini-course")
    (root / "pyproject.toml").write_text(
        "[tool.grader]\ncell_timeout = 4\nnotebook_timeout = 40\nmemory_limit_mb = 1536\n"
        "process_limit = 32\noutput_limit_kb = 64\n",
        encoding="utf-8",
    )
    for name in ("01_mini", "02_mini"):
        write(mini_solution(), root / "solutions", name)
        (root / "checks").mkdir(exist_ok=True)
        (root / "checks" / f"{name}.py").write_text(CHECKS, encoding="utf-8")
    config = dataclasses.replace(load_config(root), device="cpu")
    assign(config)
    return config


def submission(folder: Path, first: str, name: str = "01_mini") -> Path:
    """A submission whose `first` cell holds `first` (and whose `second` cell is right)."""
    return write(mini_solution(first=first), folder, name)


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
