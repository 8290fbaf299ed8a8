"""What grading produces: frozen dataclasses, and scoring as pure functions over them."""

from __future__ import annotations

from dataclasses import dataclass, field

PASSED = "passed"
FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    """One check of one TO DO cell, after both runs (the notebook's data and the hidden variant)."""

    notebook: str
    grade_id: str
    name: str
    points: float
    score: float
    status: str
    message: str = ""
    hidden_message: str = ""
    """What went wrong in the hidden variant, for the instructor only: nothing that renders
    results for a student shows it (the student's `message` names only a fixed category)."""

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass(frozen=True)
class Series:
    """One line or set of points of a figure."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    style: str = "line"
    """`line`, `dashed` or `points`."""


@dataclass(frozen=True)
class Figure:
    """A plot for the student's feedback, as data: the feedback stage draws it."""

    grade_id: str
    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...] = ()
    log_y: bool = False
    missing: str = ""
    """Why the figure could not be made from the student's run (it then has no series)."""


@dataclass(frozen=True)
class Answer:
    """The code a student wrote in one TO DO cell."""

    grade_id: str
    source: str


@dataclass(frozen=True)
class NotebookResult:
    """Every check of one submitted notebook, and what the grader noticed along the way."""

    notebook: str
    path: str
    checks: tuple[CheckResult, ...]
    notices: tuple[str, ...] = ()
    seconds: float = 0.0
    device: str = "cpu"
    isolation: str = ""
    error: str = ""
    """Why the grader could not grade this notebook at all (it then has no checks)."""
    seeds: tuple[int, ...] = field(default_factory=tuple)
    answers: tuple[Answer, ...] = ()
    figures: tuple[Figure, ...] = ()

    @property
    def score(self) -> float:
        return total_score(self.checks)

    @property
    def max_score(self) -> float:
        return total_points(self.checks)


def total_score(checks: tuple[CheckResult, ...] | list[CheckResult]) -> float:
    """Points earned by `checks`."""
    return sum(check.score for check in checks)


def total_points(checks: tuple[CheckResult, ...] | list[CheckResult]) -> float:
    """Points available in `checks`."""
    return sum(check.points for check in checks)


def ungradable(results: list[NotebookResult]) -> list[NotebookResult]:
    """The notebooks the grader could not grade (a name that matches no exercise)."""
    return [result for result in results if result.error]


def all_passed(results: list[NotebookResult]) -> bool:
    """Whether every check of every notebook earned its points."""
    return all(check.passed for result in results for check in result.checks)
