"""The course's notebook format: nbgrader cell metadata, TO DO cells and the parameters cell.

Every cell carries `metadata.nbgrader` (nbgrader's schema 3). A TO DO cell has `solution: true`
and `locked: false`; every other cell is locked. Exactly one code cell is tagged `parameters`
(papermill's convention): simple `name = literal` assignments the grader replaces per run.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from grader.errors import CourseError

PARAMETERS_TAG = "parameters"


def grade_id(cell: NotebookNode) -> str | None:
    """The cell's nbgrader grade id, or None for a cell without nbgrader metadata."""
    value = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return value if isinstance(value, str) else None


def is_todo(cell: NotebookNode) -> bool:
    """Whether the cell is one the student fills in (nbgrader's `solution: true`)."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("solution") is True


def is_parameters(cell: NotebookNode) -> bool:
    """Whether the cell is the code cell tagged `parameters`."""
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and isinstance(tags, list) and PARAMETERS_TAG in tags


def todo_ids(nb: NotebookNode) -> list[str]:
    """The grade ids of the notebook's TO DO cells, in order."""
    return [gid for cell in nb.cells if is_todo(cell) and (gid := grade_id(cell))]


def read_course_notebook(path: Path) -> NotebookNode:
    """Read one of the course's own notebooks and check its structure."""
    try:
        nb: NotebookNode = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as error:
        raise CourseError(f"{path}: cannot read the notebook ({error})") from None
    check_structure(nb, path.stem)
    return nb


def check_structure(nb: NotebookNode, name: str) -> None:
    """Raise CourseError unless every cell has nbgrader metadata, ids are unique and one cell is
    tagged `parameters`."""
    for index, cell in enumerate(nb.cells):
        if grade_id(cell) is None:
            raise CourseError(f"{name}: cell {index} has no metadata.nbgrader.grade_id")
        locked = cell.metadata["nbgrader"].get("locked") is True
        if is_todo(cell) == locked:
            raise CourseError(
                f"{name}: cell {grade_id(cell)!r} must be either a TO DO cell (solution: true, "
                "locked: false) or locked (solution: false, locked: true)"
            )
    duplicated = [gid for gid, n in Counter(map(grade_id, nb.cells)).items() if n > 1]
    if duplicated:
        raise CourseError(f"{name}: grade ids used by more than one cell: {duplicated}")
    tagged = [cell for cell in nb.cells if is_parameters(cell)]
    if len(tagged) != 1:
        raise CourseError(
            f"{name}: needs exactly one code cell tagged 'parameters', has {len(tagged)}"
        )
    read_parameters(nb, name)


def read_parameters(nb: NotebookNode, name: str) -> dict[str, Any]:
    """The values assigned in the parameters cell (`name = literal` lines only)."""
    (cell,) = [cell for cell in nb.cells if is_parameters(cell)]
    values: dict[str, Any] = {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise CourseError(f"{name}: the parameters cell is not valid Python ({error})") from None
    for statement in tree.body:
        if not (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
        ):
            raise CourseError(
                f"{name}: line {statement.lineno} of the parameters cell is not `name = value`"
            )
        try:
            values[statement.targets[0].id] = ast.literal_eval(statement.value)
        except ValueError:
            raise CourseError(
                f"{name}: line {statement.lineno} of the parameters cell is not a literal value"
            ) from None
    return values


def render_parameters(values: dict[str, Any]) -> str:
    """Source of a parameters cell that assigns `values`."""
    return "\n".join(f"{name} = {value!r}" for name, value in values.items())
