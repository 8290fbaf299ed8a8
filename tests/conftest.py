"""Shared fixtures: the bundled course, a notebook factory and submission builders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode

from grader.config import Config, load_config
from grader.notebook import grade_id

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [
    "01_autograd_basics",
    "02_linear_regression_numpy",
    "03_linear_regression_module",
    "04_autodiff_regression",
    "05_nonlinear_regression",
]


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of reference runs for the whole session (they depend only on the course)."""
    return tmp_path_factory.mktemp("grader-cache")


@pytest.fixture
def course(reference_cache: Path) -> Config:
    """The bundled course, with its reference cache outside the source tree."""
    return dataclasses.replace(load_config(ROOT), cache_dir=str(reference_cache))


def make_cell(
    source: str, gid: str, *, todo: bool = False, tags: list[str] | None = None
) -> NotebookNode:
    """One code cell with nbgrader metadata."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": gid,
        "locked": not todo,
        "schema_version": 3,
        "solution": todo,
        "task": False,
    }
    if tags:
        cell.metadata["tags"] = tags
    return cell


def make_notebook(cells: list[NotebookNode]) -> NotebookNode:
    """A notebook holding `cells`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def solution(name: str) -> NotebookNode:
    """A fresh copy of a bundled solution notebook."""
    return nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)


def cell_of(nb: NotebookNode, gid: str) -> NotebookNode:
    """The cell with grade id `gid`."""
    (cell,) = [cell for cell in nb.cells if grade_id(cell) == gid]
    return cell


def edit_solution(name: str, gid: str, old: str, new: str) -> NotebookNode:
    """The solution notebook with `old` replaced by `new` in cell `gid` (which must contain it)."""
    nb = solution(name)
    cell = cell_of(nb, gid)
    assert old in cell.source, f"{old!r} is not in {name}:{gid}"
    cell.source = cell.source.replace(old, new)
    return nb


def write(nb: NotebookNode, folder: Path, name: str) -> Path:
    """Save `nb` as `folder/name.ipynb`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path
