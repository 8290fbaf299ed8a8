"""Manual grading on top of the autograder: overrides, excuses, comments and removals.

Each command checks what it names against the class (the roster and the gradebook) and the
course (its notebooks and checks), then keeps one `GradingAction` in the gradebook's history;
`grader.standing` replays the history into every student's standing, so an override outlives
any regrade. Nothing here changes or erases a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from grader.config import Config
from grader.course import DeclaredCheck, declared_checks, find_exercises
from grader.errors import ManualGradingError
from grader.gradebook import Gradebook, GradedNotebook, GradingAction
from grader.roster import match_roster
from grader.standing import class_students, notebook_maxima

SHOWN_NAMES = 12
"""How many known names an error lists."""


@dataclass(frozen=True)
class ClassRecord:
    """What the commands check names against: the class as the gradebook holds it."""

    students: tuple[str, ...]
    maxima: dict[str, float]
    graded: tuple[GradedNotebook, ...]
    config: Config

    def declared(self, notebook: str) -> tuple[DeclaredCheck, ...]:
        """The notebook's checks as the course declares them (else as its latest runs hold)."""
        exercise = find_exercises(self.config).get(notebook)
        if exercise is not None and exercise.checks_path.is_file():
            return declared_checks(exercise)
        found = {
            check.name: DeclaredCheck(check.grade_id, check.name, check.points)
            for item in self.graded
            if item.result.notebook == notebook
            for check in item.result.checks
        }
        return tuple(found.values())


def class_record(gradebook: Gradebook, config: Config) -> ClassRecord:
    """The students (roster ids, and the keys of those graded off the roster) and notebooks."""
    roster = gradebook.roster()
    graded = tuple(match_roster(gradebook.latest(), roster))
    students = tuple(class_students(graded, roster))
    return ClassRecord(students, notebook_maxima(config, graded), graded, config)


def acting_user(named: str | None) -> str:
    """Who acts: `--by`, else the login name, as the history keeps it."""
    return named or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def override(gradebook: Gradebook, record: ClassRecord, action: GradingAction) -> GradingAction:
    """Keep an override of the notebook (`action.target` "") or of one check; a score of None
    takes the override back."""
    _known(record, action.student, action.notebook)
    if action.target:
        checks = {check.name: check.points for check in record.declared(action.notebook)}
        _one_of(action.target, checks, f"check of {action.notebook}")
        maximum = checks[action.target]
    else:
        maximum = record.maxima[action.notebook]
    if action.score is not None and not (
        math.isfinite(action.score) and 0 <= action.score <= maximum
    ):
        raise ManualGradingError(
            f"--score must be from 0 to {maximum:g}, the points of "
            f"{action.target or action.notebook}; got {action.score:g}"
        )
    latest = _latest(gradebook, action, ("override",))
    if action.score is None and (latest is None or latest.score is None):  # nothing to clear
        raise ManualGradingError(
            f"{action.student} has no override of {action.target or action.notebook} to clear"
        )
    gradebook.act(action)
    return action


def excuse(gradebook: Gradebook, record: ClassRecord, action: GradingAction) -> GradingAction:
    """Keep an excuse (or, `unexcuse`, take it back)."""
    _known(record, action.student, action.notebook)
    latest = _latest(gradebook, action, ("excuse", "unexcuse"))
    if action.kind == "unexcuse" and (latest is None or latest.kind != "excuse"):
        raise ManualGradingError(f"{action.student} is not excused from {action.notebook}")
    gradebook.act(action)
    return action


def _latest(
    gradebook: Gradebook, action: GradingAction, kinds: tuple[str, ...]
) -> GradingAction | None:
    """The latest action of `kinds` kept on the same student, notebook and target."""
    same = (action.student, action.notebook, action.target)
    earlier = [
        kept
        for kept in gradebook.actions()
        if kept.kind in kinds and (kept.student, kept.notebook, kept.target) == same
    ]
    return earlier[-1] if earlier else None


def comment(gradebook: Gradebook, record: ClassRecord, action: GradingAction) -> GradingAction:
    """Keep a comment on the notebook, one of its checks or one of its TO DO cells."""
    _known(record, action.student, action.notebook)
    if action.target:
        declared = record.declared(action.notebook)
        targets = {c.name for c in declared} | {c.grade_id for c in declared}
        _one_of(action.target, targets, f"check or TO DO cell of {action.notebook}")
    if not action.text.strip():
        raise ManualGradingError("a comment needs its text (--text)")
    gradebook.act(action)
    return action


def remove(gradebook: Gradebook, record: ClassRecord, action: GradingAction) -> int:
    """Take the student's submissions of the notebook out of the grades (grading them again
    brings them back); how many were taken out."""
    _known(record, action.student, action.notebook)
    roster = gradebook.roster()
    recorded = {  # every name recorded that the roster matches to the student, as exports do
        item.student
        for item in gradebook.latest()
        if item.result.notebook == action.notebook
        and match_roster([item], roster)[0].student == action.student
    }
    if not recorded:
        raise ManualGradingError(
            f"{action.student} has no submission of {action.notebook} in the gradebook to remove"
        )
    return gradebook.remove(action, recorded)


def _known(record: ClassRecord, student: str, notebook: str) -> None:
    _one_of(student, record.students, "student on the roster or in the gradebook")
    _one_of(notebook, record.maxima, "notebook of the course or the gradebook")


def _one_of(name: str, known: Sequence[str] | set[str] | dict[str, float], what: str) -> None:
    if name not in known:
        names = sorted(known)
        shown = ", ".join(names[:SHOWN_NAMES]) + (", ..." if len(names) > SHOWN_NAMES else "")
        raise ManualGradingError(f"no {what} is called {name!r}; known: {shown or 'none'}")
