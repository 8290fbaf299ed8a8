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
import stat
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
from grader.untrusted import MAX_NOTEBOOK_BYTES, display_name, runnable_source

MAX_INTEGER_DIGITS = 4300  # Python's own limit for converting text to int (sys.int_info)
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
    hidden: bool = False
    """Whether this is the hidden variant (nothing of its run but verdicts reaches a student)."""


def prepare_submission(path: Path, exercise: NotebookNode) -> PreparedNotebook:
    """Merge the submission's TO DO cells into the pristine exercise."""
    submission, problem = read_submission(path)
    if submission is None:
        notice = f"{display_name(path.name)} could not be read as a notebook: {problem}"
        return PreparedNotebook(copy.deepcopy(exercise), (notice,), unreadable=problem)
    return merge_cells(exercise, submission)


def read_submission(path: Path) -> tuple[NotebookNode | None, str]:
    """The parts of the submitted notebook that grading uses, or None and the reason it cannot
    be read.

    Never raises: whatever the file holds (not a regular file, too large, not UTF-8, JSON that
    is invalid, nested too deeply or holds NaN or a number too long to convert, not an nbformat 4
    notebook) ends as a reason. A UTF-8 byte order mark is allowed. Of the notebook only each
    cell's type, source and grade id are kept, so nothing else in it can matter.
    """
    data, problem = _read_bytes(path)
    if data is None:
        return None, problem
    raw, problem = _parse_json(data)
    if problem:
        return None, problem
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "the file is JSON but not a notebook (no list of cells)"
    version = raw.get("nbformat")
    if type(version) is int and version != 4:
        return None, f"nbformat {version} notebooks are not supported; save as nbformat 4"
    if version != 4:
        return None, "the file does not say which nbformat it is in; save it as nbformat 4"
    return nbformat.from_dict({"cells": [_submitted_cell(cell) for cell in raw["cells"]]}), ""


def _read_bytes(path: Path) -> tuple[bytes | None, str]:
    too_large = f"the file is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MB"
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a folder, a FIFO (reading would block)...
            return None, "it is not a regular file"
        with path.open("rb") as handle:
            data = handle.read(MAX_NOTEBOOK_BYTES + 1)
    except OSError as error:
        return None, f"the file cannot be opened ({error.strerror or error})"
    return (None, too_large) if len(data) > MAX_NOTEBOOK_BYTES else (data, "")


def _parse_json(data: bytes) -> tuple[Any, str]:
    try:
        text = data.decode("utf-8-sig")
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int), ""
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text"
    except json.JSONDecodeError as error:
        return None, f"the file is not valid JSON (line {error.lineno}: {error.msg})"
    except RecursionError:
        return None, "the file is not a notebook: its JSON is nested too deeply"
    except _UnusableNumber as error:
        return None, f"the file is not valid JSON for a notebook ({error})"


class _UnusableNumber(ValueError):
    """NaN or Infinity (not JSON), or an integer too long for Python to convert."""


def _reject_constant(name: str) -> Any:
    raise _UnusableNumber(f"{name} is not a JSON value")


def _parse_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _UnusableNumber(f"a number has more than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _submitted_cell(cell: Any) -> dict[str, Any]:
    """What grading reads of one submitted cell: type, source (None if it is not text) and
    grade id, each of the expected type or left out."""
    if not isinstance(cell, dict):
        return {}
    kept: dict[str, Any] = {"source": _source_text(cell)}
    if isinstance(cell.get("cell_type"), str):
        kept["cell_type"] = cell["cell_type"]
    gid = _submitted_grade_id(cell)
    if gid is not None:
        kept["metadata"] = {"nbgrader": {"grade_id": gid}}
    return kept


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
        source = _source_text(usable[0])
        if source is None:
            return [
                *notices,
                f"the code of TO DO cell `{gid}` in your notebook is not text (a string or a "
                "list of strings); graded as not done",
            ]
        cell.source = runnable_source(source)
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


def _source_text(cell: Any) -> str | None:
    """A cell's source as one string; None when it is neither a string nor a list of them."""
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        return "".join(source)
    return source if isinstance(source, str) else None


def public_variant(exercise: NotebookNode, name: str, device: str) -> Variant:
    """The run on the notebook's own parameters. Nothing of it depends on the hidden secret (its
    inputs' seed comes from the notebook's name), so a student kit can plan it too."""
    own = {**read_parameters(exercise, name), "device": device}
    return Variant("the notebook's own data", own, input_seed=zlib.crc32(name.encode()))


def variants(
    exercise: NotebookNode, name: str, spec: CheckSpec, device: str, hidden_seed: int
) -> list[Variant]:
    """The two runs of every notebook: its own parameters, and the hidden variant.

    The hidden variant follows from the secret, the notebook's name and the checks module's
    `hidden_parameters` only: every student of a class gets the same one.
    """
    own = public_variant(exercise, name, device)
    rng = np.random.default_rng([hidden_seed, zlib.crc32(name.encode())])
    hidden = {**own.parameters, "seed": int(rng.integers(1, 2**31 - 1))}
    if spec.hidden_parameters is not None:
        hidden.update(spec.hidden_parameters(dict(own.parameters), rng))
    return [
        own,
        Variant("the hidden variant", hidden, input_seed=int(rng.integers(2**31)), hidden=True),
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
