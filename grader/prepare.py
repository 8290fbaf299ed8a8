"""Prepare a submission for execution.

Only the TO DO cells come from the student's notebook, matched by nbgrader `grade_id`; every
other cell comes from the pristine exercise, so edits to setup or data cells cannot change a
grade. What was ignored is reported. The parameters cell is then set for each run: the
notebook's own values, and a hidden variant with another seed and other coefficients. A
follow-through run (see `grader.check.plan_follow_through`) takes some TO DO cells from the
solution instead.
"""

from __future__ import annotations

import copy
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
from nbformat import NotebookNode

from grader.course import CheckSpec
from grader.errors import CourseError
from grader.notebook import (
    grade_id,
    is_parameters,
    is_todo,
    read_parameters,
    render_parameters,
    todo_ids,
)

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024
RUNS_PER_NOTEBOOK = 2  # the length of every `variants` list


@dataclass(frozen=True)
class PreparedNotebook:
    """The notebook the grader runs, and the notices for the student."""

    notebook: NotebookNode
    notices: tuple[str, ...]
    unreadable: str = ""


@dataclass(frozen=True)
class Variant:
    """One run of a notebook: label, parameter values, and the seed of the grader's inputs."""

    label: str
    parameters: dict[str, Any]
    input_seed: int


def prepare_submission(path: Path, exercise: NotebookNode) -> PreparedNotebook:
    """Merge the submission's TO DO cells into the pristine exercise."""
    submission, problem = read_submission(path)
    if submission is None:
        notice = f"{path.name} could not be read as a notebook: {problem}"
        return PreparedNotebook(copy.deepcopy(exercise), (notice,), unreadable=problem)
    return merge_cells(exercise, submission)


def read_submission(path: Path) -> tuple[NotebookNode | None, str]:
    """The submitted notebook, or None and the reason it cannot be read."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return None, f"the file is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MB"
        text = path.read_bytes().decode("utf-8")
        raw = json.loads(text)
    except OSError as error:
        return None, f"the file cannot be opened ({error.strerror})"
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text"
    except json.JSONDecodeError as error:
        return None, f"the file is not valid JSON (line {error.lineno}: {error.msg})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "the file is JSON but not a notebook (no list of cells)"
    if raw.get("nbformat") != 4:
        return (
            None,
            f"nbformat {raw.get('nbformat')} notebooks are not supported; save as nbformat 4",
        )
    return nbformat.from_dict(raw), ""


def merge_cells(exercise: NotebookNode, submission: NotebookNode) -> PreparedNotebook:
    """The exercise with each TO DO cell's source taken from the submission."""
    submitted: dict[str, list[Any]] = {}
    foreign = 0
    for cell in submission.cells:
        gid = _submitted_grade_id(cell)
        if gid is None:
            foreign += 1
        else:
            submitted.setdefault(gid, []).append(cell)
    merged = copy.deepcopy(exercise)
    notices: list[str] = []
    for cell in merged.cells:
        gid = grade_id(cell) or ""
        candidates = submitted.pop(gid, [])
        notices.extend(_merge_one(cell, gid, candidates))
    foreign += sum(len(cells) for cells in submitted.values())
    if foreign:
        notices.append(
            f"{foreign} cell(s) that are not part of the exercise were ignored: "
            "the grader runs only the exercise's cells, so put your code in the TO DO cells"
        )
    return PreparedNotebook(merged, tuple(notices))


def _merge_one(cell: NotebookNode, gid: str, candidates: list[Any]) -> list[str]:
    notices = []
    if len(candidates) > 1:
        notices.append(f"cell `{gid}` appears {len(candidates)} times; the first one was used")
    if is_todo(cell):
        usable = [c for c in candidates if c.get("cell_type") == cell.cell_type]
        if not usable:
            return [
                *notices,
                f"TO DO cell `{gid}` is missing from your notebook; graded as not done",
            ]
        cell.source = _source_text(usable[0])
    elif candidates and _source_text(candidates[0]) != cell.source:
        notices.append(f"your edits to the locked cell `{gid}` were ignored")
    return notices


def _submitted_grade_id(cell: Any) -> str | None:
    if not isinstance(cell, dict):
        return None
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    gid = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return gid if isinstance(gid, str) else None


def _source_text(cell: Any) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(str(part) for part in source)
    return source if isinstance(source, str) else ""


def variants(
    exercise: NotebookNode, name: str, spec: CheckSpec, device: str, hidden_seed: int
) -> list[Variant]:
    """The two runs of every notebook: its own parameters, and the hidden variant."""
    own = {**read_parameters(exercise, name), "device": device}
    rng = np.random.default_rng([hidden_seed, zlib.crc32(name.encode())])
    hidden = {**own, "seed": int(rng.integers(1, 2**31 - 1))}
    if spec.hidden_parameters is not None:
        hidden.update(spec.hidden_parameters(dict(own), rng))
    return [
        Variant("the notebook's own data", own, input_seed=int(rng.integers(2**31))),
        Variant("the hidden variant", hidden, input_seed=int(rng.integers(2**31))),
    ]


def with_parameters(nb: NotebookNode, parameters: dict[str, Any]) -> NotebookNode:
    """A copy of `nb` whose parameters cell assigns `parameters`."""
    result = copy.deepcopy(nb)
    for cell in result.cells:
        if is_parameters(cell):
            cell.source = render_parameters(parameters)
    return result


def with_solution_cells(
    nb: NotebookNode, solution: NotebookNode, cells: tuple[str, ...]
) -> NotebookNode:
    """A copy of `nb` whose TO DO cells `cells` hold the solution's code (a follow-through run)."""
    sources = {gid: cell.source for cell in solution.cells if (gid := grade_id(cell)) in cells}
    result = copy.deepcopy(nb)
    for cell in result.cells:
        gid = grade_id(cell)
        if gid in sources and is_todo(cell):
            cell.source = sources[gid]
    return result


def edited_todo_cells(nb: NotebookNode, exercise: NotebookNode) -> frozenset[str]:
    """The TO DO cells of a prepared notebook whose code is not the exercise's placeholder."""
    placeholders = {grade_id(cell): str(cell.source).strip() for cell in exercise.cells}
    return frozenset(
        gid
        for cell in nb.cells
        if is_todo(cell)
        and (gid := grade_id(cell))
        and str(cell.source).strip() != placeholders.get(gid)
    )


def check_dependencies(nb: NotebookNode, name: str, depends_on: dict[str, dict[str, str]]) -> None:
    """Raise CourseError unless `depends_on` names TO DO cells of `nb`, each using only cells
    above it."""
    order = {gid: index for index, gid in enumerate(todo_ids(nb))}
    for dependent, uses in depends_on.items():
        for cell in (dependent, *uses):
            if cell not in order:
                raise CourseError(f"{name}: DEPENDS_ON names `{cell}`, which is not a TO DO cell")
        for used in uses:
            if order[used] >= order[dependent]:
                raise CourseError(
                    f"{name}: DEPENDS_ON says `{dependent}` uses `{used}`, which is not above it"
                )
