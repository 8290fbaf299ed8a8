"""Where every student stands in every notebook: the autograder's score, late work, the
instructor's own word, and the final score that every export and page shows.

One pure function, `class_standings`, over what the gradebook holds (the latest graded
submissions, matched to the roster, and the instructor's actions) and the course's late policy;
`standings` reads those from a gradebook. The rules, in the order they apply:

- `raw` is the latest run's score of the latest submission (None: nothing handed in);
- an override of the notebook replaces `raw`; overrides of checks replace those checks' scores
  in it; either way `override` is the score that then counts. Overrides are actions kept apart
  from the runs, so grading again (`--regrade`) never undoes them;
- `late_days`: whole days, rounded up, from the due time (the student's extension if they have
  one) to the submission time, if that is past the grace period; a submission the LMS marked late
  is at least one day late, unless the student has an extension (the LMS knew nothing of it);
- `penalty`: `late_penalty_per_day` x the days, at most `late_penalty_cap`, as a share of the
  notebook's maximum, and never more than the score it is taken from: `final = score - penalty`;
- an excused notebook has no final score and counts in no total, nor its maximum.

The maximum is the sum of the points the course's checks module declares; a notebook the course
no longer has keeps the maximum its runs recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from grader.config import Config
from grader.course import declared_checks, find_exercises

if TYPE_CHECKING:  # the gradebook's imports (SQLAlchemy) only where a gradebook is read
    from grader.gradebook import Gradebook, GradedNotebook, GradingAction
    from grader.roster import RosterEntry

Status = Literal["graded", "late", "overridden", "excused", "missing"]
DECIMALS = 2
"""Penalties and final scores are rounded to hundredths of a point (what an LMS shows)."""
_DAY = timedelta(days=1)


@dataclass(frozen=True)
class Standing:
    """One student's result in one notebook, every rule applied."""

    raw: float | None
    """The autograder's score; None: nothing handed in."""
    maximum: float
    late_days: int
    penalty: float
    """Points taken off for late work (0 when on time)."""
    override: float | None
    """The instructor's score, which replaces `raw` (None: none)."""
    excused: bool
    final: float | None
    """What counts: (override, else raw) - penalty; None when missing or excused."""
    status: Status


def standings(gradebook: Gradebook, config: Config) -> dict[str, dict[str, Standing]]:
    """Student id -> notebook -> `Standing`, for every roster student and everyone graded who is
    not on the roster, and every notebook of the course (and any other the gradebook holds)."""
    from grader.roster import match_roster

    roster = gradebook.roster()
    graded = match_roster(gradebook.latest(), roster)
    return class_standings(graded, roster, gradebook.actions(), config)


def class_standings(
    graded: Sequence[GradedNotebook],
    roster: Sequence[RosterEntry],
    actions: Sequence[GradingAction],
    config: Config,
) -> dict[str, dict[str, Standing]]:
    """`standings` over data already read (`graded` matched to the roster)."""
    maxima = notebook_maxima(config, graded)
    latest = {(item.student, item.result.notebook): item for item in graded}
    manual = manual_grades(actions)
    return {
        student: {
            notebook: _standing(
                latest.get((student, notebook)),
                maximum,
                manual.get((student, notebook), ManualGrade()),
                _due(config, student, notebook),
                config,
            )
            for notebook, maximum in maxima.items()
        }
        for student in class_students(graded, roster)
    }


def class_students(graded: Iterable[GradedNotebook], roster: Sequence[RosterEntry]) -> list[str]:
    """Every roster student's id, and the key of everyone graded whom the roster does not list."""
    return sorted({entry.lms_id for entry in roster} | {item.student for item in graded})


def notebook_maxima(config: Config, graded: Iterable[GradedNotebook] = ()) -> dict[str, float]:
    """Notebook -> its maximum score, notebooks in order: the course's from its checks modules,
    then those only the gradebook holds, from their runs."""
    maxima = {
        name: sum(check.points for check in declared_checks(exercise))
        for name, exercise in find_exercises(config).items()
        if exercise.checks_path.is_file()
    }
    recorded: dict[str, float] = {}
    for item in graded:
        notebook = item.result.notebook
        recorded[notebook] = max(recorded.get(notebook, 0.0), item.result.max_score)
    return maxima | {nb: recorded[nb] for nb in sorted(recorded) if nb not in maxima}


def student_total(notebooks: Mapping[str, Standing]) -> tuple[float, float]:
    """(points, maximum) of one student's notebooks: excused ones count in neither."""
    counted = [standing for standing in notebooks.values() if not standing.excused]
    return (
        round(sum(standing.final or 0.0 for standing in counted), DECIMALS),
        sum(standing.maximum for standing in counted),
    )


@dataclass(frozen=True)
class ManualGrade:
    """What the instructor's actions say about one student's notebook, once replayed."""

    notebook: GradingAction | None = None
    """The override of the whole notebook in force."""
    checks: Mapping[str, GradingAction] = field(default_factory=dict)
    """Check name -> the override of that check in force."""
    excused: bool = False
    comments: tuple[GradingAction, ...] = ()


def manual_grades(actions: Iterable[GradingAction]) -> dict[tuple[str, str], ManualGrade]:
    """(student, notebook) -> the overrides, excuse and comments in force after `actions`."""
    grades: dict[tuple[str, str], ManualGrade] = {}
    for action in actions:
        key = (action.student, action.notebook)
        grades[key] = _replayed(grades.get(key, ManualGrade()), action)
    return grades


def _replayed(grade: ManualGrade, action: GradingAction) -> ManualGrade:
    """`grade` after `action` (an override with no score takes the override back)."""
    in_force = action if action.score is not None else None
    if action.kind == "override" and not action.target:
        return replace(grade, notebook=in_force)
    if action.kind == "override":
        checks = {name: a for name, a in grade.checks.items() if name != action.target}
        return replace(grade, checks=checks | ({action.target: in_force} if in_force else {}))
    if action.kind in ("excuse", "unexcuse"):
        return replace(grade, excused=action.kind == "excuse")
    if action.kind == "comment":
        return replace(grade, comments=(*grade.comments, action))
    return grade  # a removal changes no score: the submission is gone from the runs


def _standing(
    item: GradedNotebook | None,
    maximum: float,
    manual: ManualGrade,
    due: tuple[datetime | None, bool],
    config: Config,
) -> Standing:
    raw = None if item is None else item.result.score
    override = _override(item, manual)
    late_days = _late_days(item, *due, config.late_grace_minutes)
    if manual.excused:
        return Standing(raw, maximum, late_days, 0.0, override, True, None, "excused")
    score = raw if override is None else override
    if score is None:
        return Standing(None, maximum, 0, 0.0, None, False, None, "missing")
    share = min(late_days * config.late_penalty_per_day, config.late_penalty_cap)
    penalty = round(min(score, share * maximum), DECIMALS)
    status: Status = "overridden" if override is not None else "late" if late_days else "graded"
    final = round(score - penalty, DECIMALS)
    return Standing(raw, maximum, late_days, penalty, override, False, final, status)


def _override(item: GradedNotebook | None, manual: ManualGrade) -> float | None:
    if manual.notebook is not None:
        return manual.notebook.score
    if not manual.checks:
        return None
    recorded = {} if item is None else {check.name: check.score for check in item.result.checks}
    scores = recorded | {name: action.score or 0.0 for name, action in manual.checks.items()}
    return sum(scores.values())


def _due(config: Config, student: str, notebook: str) -> tuple[datetime | None, bool]:
    """The student's due time for the notebook (None: none), and whether it is an extension."""
    extension = config.extensions.get(student, {}).get(notebook)
    if extension is not None:
        return extension, True
    return config.due.get(notebook), False


def _late_days(
    item: GradedNotebook | None, due: datetime | None, extended: bool, grace_minutes: float
) -> int:
    if item is None:
        return 0
    days = 0
    if due is not None:
        # the gradebook's times are naive UTC
        late = item.submitted_at - due.astimezone(timezone.utc).replace(tzinfo=None)
        if late > timedelta(minutes=grace_minutes):
            days = math.ceil(late / _DAY)
    return max(days, 1) if item.lms_late and not extended else days
