from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from grader.assign import BEGIN, END, assign, make_exercise, render_exercise
from grader.config import Config
from grader.errors import MarkerError
from grader.notebook import todo_ids
from tests.conftest import NOTEBOOKS, ROOT, make_cell, make_notebook


def test_exercises_are_what_assign_writes_now(course: Config) -> None:
    for name in NOTEBOOKS:
        written = (ROOT / "exercises" / f"{name}.ipynb").read_text(encoding="utf-8")
        assert written == render_exercise(ROOT / "solutions" / f"{name}.ipynb"), (
            f"exercises/{name}.ipynb is stale: run `grader assign`"
        )
    assert assign(course, check_only=True) == []


def test_assign_writes_exercises_into_an_empty_folder(course: Config, tmp_path: Path) -> None:
    target = dataclasses.replace(course, exercises_dir=str(tmp_path / "ex"))
    changed = assign(target)
    assert sorted(path.stem for path in changed) == NOTEBOOKS
    assert assign(target) == []


def test_placeholder_replaces_only_the_region() -> None:
    source = f"# keep me\n{BEGIN}\nanswer = 42\n{END}\n# and me"
    nb = make_notebook([make_cell(source, "task", todo=True)])
    exercise = make_exercise(nb, "demo.ipynb")
    text = exercise.cells[0].source
    assert "answer = 42" not in text
    assert text.startswith("# keep me\n") and text.endswith("# and me")
    assert 'raise NotImplementedError("TO DO cell `task` is not done yet")' in text


def test_placeholder_keeps_indentation() -> None:
    source = f"def f(x):\n    {BEGIN}\n    return x\n    {END}"
    exercise = make_exercise(make_notebook([make_cell(source, "task", todo=True)]), "demo")
    assert "\n    raise NotImplementedError" in exercise.cells[0].source


def test_outputs_and_counts_are_cleared_metadata_kept() -> None:
    cell = make_cell(f"{BEGIN}\nx = 1\n{END}", "task", todo=True)
    cell.outputs = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    cell.execution_count = 3
    exercise = make_exercise(make_notebook([cell]), "demo")
    assert exercise.cells[0].outputs == [] and exercise.cells[0].execution_count is None
    assert exercise.cells[0].metadata["nbgrader"]["grade_id"] == "task"
    assert todo_ids(exercise) == ["task"]


@pytest.mark.parametrize(
    ("source", "line", "problem"),
    [
        (f"x = 1\n{BEGIN}\ny = 2", 2, "never closed"),
        (f"{BEGIN}\n{BEGIN}\n{END}", 2, "inside the region opened on line 1"),
        (f"x = 1\n{END}", 2, "without a"),
    ],
)
def test_marker_errors_name_notebook_cell_and_line(source: str, line: int, problem: str) -> None:
    nb = make_notebook([make_cell("import torch", "imports"), make_cell(source, "task", todo=True)])
    with pytest.raises(MarkerError) as caught:
        make_exercise(nb, "07_demo.ipynb")
    assert (caught.value.notebook, caught.value.cell, caught.value.line) == (
        "07_demo.ipynb",
        "task",
        line,
    )
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"07_demo.ipynb, cell task, line {line}:")


def test_region_outside_a_todo_cell_is_refused() -> None:
    nb = make_notebook([make_cell(f"a = 1\n{BEGIN}\nb = 2\n{END}", "setup")])
    with pytest.raises(MarkerError, match=r"demo, cell setup, line 2: a solution region outside"):
        make_exercise(nb, "demo")


def test_todo_cell_without_region_is_refused() -> None:
    with pytest.raises(MarkerError, match="needs a ### BEGIN SOLUTION region"):
        make_exercise(make_notebook([make_cell("x = 1", "task", todo=True)]), "demo")
