"""Authoring: write the student notebooks (`exercises/`) from the reference ones (`solutions/`).

Inside a TO DO cell, the lines between `### BEGIN SOLUTION` and `### END SOLUTION` are the
reference solution. `grader assign` replaces each region by a placeholder that raises
NotImplementedError, clears outputs and execution counts, and keeps all metadata.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from grader.config import Config
from grader.errors import CourseError, MarkerError
from grader.notebook import grade_id, is_todo, read_course_notebook

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"


def placeholder(cell_id: str, indent: str) -> list[str]:
    """The lines a student sees instead of the solution."""
    return [
        f"{indent}# TO DO: write your code here (see the instructions above), then delete the",
        f"{indent}# next line.",
        f'{indent}raise NotImplementedError("TO DO cell `{cell_id}` is not done yet")',
    ]


def strip_solution_source(source: str, notebook: str, cell_id: str) -> str:
    """Replace every solution region of one cell's source by the placeholder."""
    kept: list[str] = []
    opened_at: int | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if opened_at is not None:
                raise MarkerError(
                    notebook,
                    cell_id,
                    number,
                    f"{BEGIN} inside the region opened on line {opened_at}",
                )
            opened_at = number
            kept.extend(placeholder(cell_id, line[: len(line) - len(line.lstrip())]))
        elif marker == END:
            if opened_at is None:
                raise MarkerError(notebook, cell_id, number, f"{END} without a {BEGIN} before it")
            opened_at = None
        elif opened_at is None:
            kept.append(line)
    if opened_at is not None:
        raise MarkerError(notebook, cell_id, opened_at, f"{BEGIN} is never closed by {END}")
    return "\n".join(kept)


def make_exercise(solution: NotebookNode, notebook: str) -> NotebookNode:
    """The student version of a solution notebook."""
    exercise = copy.deepcopy(solution)
    for index, cell in enumerate(exercise.cells):
        cell_id = grade_id(cell) or f"#{index}"
        if not is_todo(cell):
            _refuse_markers(cell.source, notebook, cell_id)
        elif cell.cell_type == "code":
            stripped = strip_solution_source(cell.source, notebook, cell_id)
            if stripped == cell.source:
                raise MarkerError(notebook, cell_id, 1, f"a TO DO cell needs a {BEGIN} region")
            cell.source = stripped
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return exercise


def render_exercise(solution_path: Path) -> str:
    """The exact text `grader assign` writes for one solution notebook."""
    solution = read_course_notebook(solution_path)
    text: str = nbformat.writes(make_exercise(solution, solution_path.name))
    return text + "\n"


def assign(config: Config, *, check_only: bool = False) -> list[Path]:
    """Write `exercises/` from `solutions/`; return the exercise files that changed.

    With `check_only`, write nothing: the returned files are those that are out of date.
    """
    solutions = sorted(config.path(config.solutions_dir).glob("*.ipynb"))
    if not solutions:
        raise CourseError(f"no solution notebooks in {config.path(config.solutions_dir)}")
    exercises = config.path(config.exercises_dir)
    changed: list[Path] = []
    for solution_path in solutions:
        target = exercises / solution_path.name
        text = render_exercise(solution_path)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        changed.append(target)
        if not check_only:
            exercises.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    return changed


def _refuse_markers(source: str, notebook: str, cell_id: str) -> None:
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() in (BEGIN, END):
            raise MarkerError(
                notebook,
                cell_id,
                number,
                "a solution region outside a TO DO cell (solution: false)",
            )
