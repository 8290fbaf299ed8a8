"""The course: its exercises, their reference solutions and their checks modules.

A checks module (`checks/<notebook>.py`) is an ordinary pytest module that also declares what
the grader must read from the notebook:

- `VALUES`: the notebook variables the checks read;
- `calls(parameters, rng)` (optional): the grader's calls of student functions (`Call`s);
- `hidden_parameters(parameters, rng)` (optional): the parameter values of the hidden variant
  (the seed is drawn by the grader);
- `DEPENDS_ON` (optional): the earlier TO DO cells each TO DO cell uses, with the name it uses
  from each (`{"sgd_loop": {"manual_gradient": "gradient"}}`), for follow-through credit;
- functions marked `@figure(...)` (optional): plots for the student's feedback
  (`grader.figures`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from grader.config import Config
from grader.errors import CourseError, UnknownNotebookError

if TYPE_CHECKING:  # exports and pages read the course's points without the pipeline's imports
    import numpy as np

    from grader.extract import Call
    from grader.figures import FigureSpec

GRADE_MARKER = "grade"
"""`@pytest.mark.grade(grade_id, points=...)`: the TO DO cell a check grades, and its points."""


@dataclass(frozen=True)
class Exercise:
    """One notebook of the course: the student version, the solution and the checks."""

    name: str
    exercise_path: Path
    solution_path: Path
    checks_path: Path


@dataclass(frozen=True)
class CheckSpec:
    """What a checks module asks the grader to read from the notebook."""

    values: tuple[str, ...]
    calls: Callable[[dict[str, Any], np.random.Generator], list[Call]] | None
    hidden_parameters: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]] | None
    figures: tuple[FigureSpec, ...] = ()
    depends_on: dict[str, dict[str, str]] = field(default_factory=dict)
    """`DEPENDS_ON`: {TO DO cell: {earlier TO DO cell it uses: the name it uses from it}}."""


def find_exercises(config: Config) -> dict[str, Exercise]:
    """Every exercise that has a solution notebook (in a student kit, which has no solutions:
    an exercise notebook), by name."""
    found = config.path(config.exercises_dir if config.kit else config.solutions_dir)
    return {
        path.stem: Exercise(
            name=path.stem,
            exercise_path=config.path(config.exercises_dir) / path.name,
            solution_path=config.path(config.solutions_dir) / path.name,
            checks_path=config.path(config.checks_dir) / f"{path.stem}.py",
        )
        for path in sorted(found.glob("*.ipynb"))
    }


def exercise_for(path: Path, name: str, exercises: dict[str, Exercise]) -> Exercise:
    """The exercise called `name`, that the submitted notebook `path` claims to be."""
    exercise = exercises.get(name)
    if exercise is None:
        raise UnknownNotebookError(path, sorted(exercises), name)
    for needed in (exercise.exercise_path, exercise.checks_path):
        if not needed.is_file():
            raise CourseError(
                f"exercise {exercise.name!r} has no {needed} (run `grader assign` for exercises)"
            )
    return exercise


def load_check_spec(exercise: Exercise) -> CheckSpec:
    """Import the exercise's checks module and read its declarations."""
    from grader.figures import declared_figures

    module = _import_checks(exercise.checks_path)
    values = getattr(module, "VALUES", None)
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise CourseError(f"{exercise.checks_path}: VALUES must be a list of variable names")
    return CheckSpec(
        values=tuple(values),
        calls=getattr(module, "calls", None),
        hidden_parameters=getattr(module, "hidden_parameters", None),
        figures=declared_figures(vars(module)),
        depends_on=_dependencies(exercise.checks_path, getattr(module, "DEPENDS_ON", {})),
    )


@dataclass(frozen=True)
class DeclaredCheck:
    """A check as its module declares it: the TO DO cell it grades and its points."""

    grade_id: str
    name: str
    """As results name it: the test function's name without `test_`."""
    points: float


def declared_checks(exercise: Exercise) -> tuple[DeclaredCheck, ...]:
    """The checks the exercise's module declares, read from its source without running it.

    Exports and pages need the points of every notebook, handed in or not, and must not pay
    for importing torch; the markers are literals (`grade("cell", points=2)`), as pytest reads
    them when grading (a test that the two readings agree grades the bundled solutions).
    """
    path = exercise.checks_path
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError) as error:
        raise CourseError(f"{path}: the checks module cannot be read: {error}") from None
    return tuple(
        _declared(path, node)
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test")
    )


def _declared(path: Path, function: ast.FunctionDef | ast.AsyncFunctionDef) -> DeclaredCheck:
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call) and _is_grade_marker(decorator.func):
            try:
                grade_id = ast.literal_eval(decorator.args[0]) if decorator.args else None
                points = {k.arg: ast.literal_eval(k.value) for k in decorator.keywords}.get(
                    "points", 1
                )
            except ValueError:
                grade_id = None
            if isinstance(grade_id, str) and isinstance(points, (int, float)):
                return DeclaredCheck(grade_id, function.name.removeprefix("test_"), float(points))
    raise CourseError(
        f"{path}: check {function.name} needs @pytest.mark.{GRADE_MARKER}(grade_id, points=...) "
        "with a literal grade id and number of points"
    )


def _is_grade_marker(node: ast.expr) -> bool:
    """`pytest.mark.grade` or `mark.grade`."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == GRADE_MARKER
        and (
            (isinstance(node.value, ast.Attribute) and node.value.attr == "mark")
            or (isinstance(node.value, ast.Name) and node.value.id == "mark")
        )
    )


def _dependencies(path: Path, declared: object) -> dict[str, dict[str, str]]:
    """`DEPENDS_ON` as plain dicts of names, or a CourseError saying what shape it must have."""
    if isinstance(declared, dict) and all(
        isinstance(cell, str)
        and isinstance(uses, dict)
        and all(isinstance(used, str) and isinstance(name, str) for used, name in uses.items())
        for cell, uses in declared.items()
    ):
        return {cell: dict(uses) for cell, uses in declared.items()}
    raise CourseError(
        f"{path}: DEPENDS_ON must map a TO DO cell's grade id to "
        "{earlier TO DO cell's grade id: the name it uses from that cell}"
    )


def _import_checks(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"grader_checks_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise CourseError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise CourseError(f"{path}: the checks module failed to import: {error!r}") from error
    return module


def course_version(exercise: Exercise, hidden_seed: int) -> str:
    """A fingerprint of everything that decides an exercise's grades besides the submission:
    its exercise and solution notebooks, its checks module and the hidden variant's secret."""
    digest = hashlib.sha256(str(hidden_seed).encode())
    for path in (exercise.exercise_path, exercise.solution_path, exercise.checks_path):
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]
