"""Standings: the raw score, late days and penalty, overrides and excuses, and the final score."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from grader.config import Config, load_config
from grader.errors import ConfigError, CourseError
from grader.gradebook import Gradebook, GradedNotebook, GradingAction
from grader.results import FAILED, PASSED, CheckResult, NotebookResult
from grader.roster import RosterEntry
from grader.standing import Standing, class_standings, notebook_maxima, standings, student_total
from grader.submissions import Submission

ROOT = Path(__file__).resolve().parent.parent
DUE = datetime(2026, 10, 1, 23, 59, tzinfo=timezone(timedelta(hours=2)))
DUE_UTC = datetime(2026, 10, 1, 21, 59)  # as the gradebook keeps times: naive UTC


def graded(
    student: str, scores: tuple[float, ...] = (1.0, 2.0), *, at: datetime = DUE_UTC,
    late: bool = False, notebook: str = "01_nb",
) -> GradedNotebook:  # fmt: skip
    checks = tuple(
        CheckResult(notebook, "cell", f"c{i}", 2.0, s, PASSED if s == 2.0 else FAILED)
        for i, s in enumerate(scores)
    )
    result = NotebookResult(notebook, f"{student}/{notebook}.ipynb", checks)
    return GradedNotebook(student, result.path, "0" * 64, at, at, "1", result, lms_late=late)


def policy(**settings: object) -> Config:
    return Config(root=Path("/nonexistent"), due={"01_nb": DUE}, **settings)  # type: ignore[arg-type]


def one(item: GradedNotebook, config: Config, actions: tuple[GradingAction, ...] = ()) -> Standing:
    return class_standings([item], [], actions, config)[item.student]["01_nb"]


def test_every_roster_student_and_everyone_graded_has_a_standing_per_notebook() -> None:
    roster = [RosterEntry("100", "Ann"), RosterEntry("200", "Ben")]
    table = class_standings([graded("100"), graded("stray")], roster, [], policy())
    assert sorted(table) == ["100", "200", "stray"]
    assert table["200"]["01_nb"] == Standing(None, 4.0, 0, 0.0, None, False, None, "missing")
    assert table["100"]["01_nb"] == Standing(3.0, 4.0, 0, 0.0, None, False, 3.0, "graded")


@pytest.mark.parametrize(
    ("submitted", "grace", "days", "penalty"),
    [
        (DUE_UTC, 0, 0, 0.0),  # at the due time: on time
        (DUE_UTC + timedelta(minutes=10), 15, 0, 0.0),  # within the grace period
        (DUE_UTC + timedelta(minutes=20), 15, 1, 0.4),  # past it: a day, counted from the due time
        (DUE_UTC + timedelta(days=1, seconds=1), 0, 2, 0.8),  # part of a day counts as one
        (DUE_UTC + timedelta(days=9), 0, 9, 2.0),  # capped at half the maximum (4 points)
        (DUE_UTC - timedelta(days=3), 0, 0, 0.0),
    ],
)
def test_late_days_and_the_penalty_follow_the_policy(
    submitted: datetime, grace: int, days: int, penalty: float
) -> None:
    config = policy(late_grace_minutes=grace, late_penalty_per_day=0.1, late_penalty_cap=0.5)
    standing = one(graded("a", (2.0, 2.0), at=submitted), config)
    assert (standing.late_days, standing.penalty) == (days, penalty)
    assert standing.final == pytest.approx(4.0 - penalty)
    assert standing.status == ("late" if days else "graded")


def test_the_penalty_never_takes_more_than_the_score() -> None:
    config = policy(late_penalty_per_day=0.5)
    standing = one(graded("a", (1.0, 0.0), at=DUE_UTC + timedelta(days=1)), config)
    assert (standing.penalty, standing.final) == (1.0, 0.0)


def test_an_lms_late_mark_is_a_day_late_unless_the_student_has_an_extension() -> None:
    config = Config(root=Path("/nonexistent"), late_penalty_per_day=0.25)  # no due time at all
    assert (one(graded("a", late=True), config).late_days, one(graded("a"), config).late_days) == (
        1, 0,
    )  # fmt: skip
    extended = policy(
        late_penalty_per_day=0.25, extensions={"a": {"01_nb": DUE + timedelta(days=3)}}
    )
    standing = one(graded("a", (2.0, 2.0), at=DUE_UTC + timedelta(days=2), late=True), extended)
    assert (standing.late_days, standing.final) == (0, 4.0)
    later = one(graded("a", (2.0, 2.0), at=DUE_UTC + timedelta(days=4)), extended)
    assert (later.late_days, later.penalty) == (1, 1.0)
    others = one(graded("b", (2.0, 2.0), at=DUE_UTC + timedelta(days=2)), extended)
    assert others.late_days == 2, "an extension is one student's"


def act(kind: str, target: str = "", score: float | None = None) -> GradingAction:
    return GradingAction("a", "01_nb", kind, target, score, "because")  # type: ignore[arg-type]


def test_overrides_replace_the_score_the_penalty_is_taken_from() -> None:
    config = policy(late_penalty_per_day=0.1)
    item = graded("a", (2.0, 0.0), at=DUE_UTC + timedelta(hours=1))
    notebook = one(item, config, (act("override", score=3.0),))
    assert (notebook.raw, notebook.override) == (2.0, 3.0)
    assert (notebook.penalty, notebook.final) == (0.4, 2.6)
    assert notebook.status == "overridden" and notebook.late_days == 1
    check = one(item, config, (act("override", "c1", 1.5),))
    assert check.override == 3.5, "c1's 0 becomes 1.5"
    undone = one(item, config, (act("override", "c1", 1.5), act("override", "c1")))
    assert undone.override is None and undone.status == "late"
    both = one(item, config, (act("override", "c1", 1.5), act("override", score=1.0)))
    assert both.override == 1.0, "the notebook's override wins over its checks'"


def test_an_excused_notebook_counts_in_no_total() -> None:
    items = [graded("a"), graded("a", notebook="02_nb")]
    table = class_standings(items, [], [act("excuse")], Config(root=Path("/nonexistent")))["a"]
    assert table["01_nb"].excused and table["01_nb"].final is None
    assert table["01_nb"].status == "excused"
    assert student_total(table) == (3.0, 4.0)
    again = class_standings(items, [], [act("excuse"), act("unexcuse")], policy())["a"]
    assert student_total(again) == (6.0, 8.0)


def submission(sha: str) -> Submission:
    return Submission(
        "Ann Lee_100", "01_nb", Path("x.ipynb"), "x.ipynb", sha * 64, DUE_UTC
    )  # fmt: skip


def test_overrides_survive_a_regrade_and_removal_takes_the_submission_out(tmp_path: Path) -> None:
    with Gradebook(str(tmp_path / "g.db")) as gradebook:
        gradebook.import_roster([RosterEntry("100", "Ann Lee")])
        result = graded("x").result
        gradebook.record(submission("a"), result, "1", "v1")
        gradebook.act(GradingAction("100", "01_nb", "override", "", 4.0, "oral exam", "prof"))
        gradebook.record(submission("a"), result, "1", "v2")  # `grade --regrade`
        assert standings(gradebook, policy())["100"]["01_nb"].final == 4.0
        (kept,) = gradebook.actions()
        assert (kept.by, kept.text, kept.score) == ("prof", "oral exam", 4.0)
        removal = GradingAction("100", "01_nb", "remove", text="wrong course")
        assert gradebook.remove(removal, ["Ann Lee_100"]) == 1
        assert gradebook.latest() == []
        assert not gradebook.is_graded(submission("a"), "1", "v2"), "removed: graded again"
        assert [a.kind for a in gradebook.actions()] == ["override", "remove"]
        gradebook.record(submission("a"), result, "1", "v2")
        assert [g.result.score for g in gradebook.latest()] == [3.0]


def test_maxima_come_from_the_course_checks() -> None:
    maxima = notebook_maxima(load_config(ROOT), [graded("a", notebook="retired")])
    assert maxima["02_linear_regression_numpy"] == 13.0
    assert list(maxima)[-1] == "retired" and maxima["retired"] == 4.0


def course(tmp_path: Path, table: str) -> Path:
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_nb.ipynb").write_text("{}")
    (tmp_path / "pyproject.toml").write_text(f"[tool.grader]\n{table}\n")
    return tmp_path


def test_due_times_are_read_with_their_offset(tmp_path: Path) -> None:
    config = load_config(
        course(
            tmp_path,
            'late_penalty_per_day = 0.1\n[tool.grader.due]\n"01_nb" = 2026-10-01T23:59:00+02:00\n'
            '[tool.grader.extensions.100]\n"01_nb" = "2026-10-03T23:59:00+02:00"',
        )
    )
    assert config.due == {"01_nb": DUE}
    assert config.extensions == {"100": {"01_nb": DUE + timedelta(days=2)}}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[tool.grader.due]\n"01_nb" = 2026-10-01T23:59:00', "has no UTC offset"),
        ('[tool.grader.due]\n"01_nb" = "2026-10-01 23:59"', "has no UTC offset"),
        ('[tool.grader.due]\n"01_nb" = "next friday"', "is not a date and time"),
        ('[tool.grader.due]\n"01_nb" = 0001-01-01T00:00:00+02:00', "out of the range of dates"),
        ('[tool.grader.due]\n"01_nb" = 2026-10-01', "is not a date and time"),
        ('[tool.grader.due]\n"09_nope" = 2026-10-01T23:59:00Z', "no notebook is called '09_nope'"),
        ('[tool.grader.extensions.100]\n"9" = 2026-10-01T23:59:00Z', "no notebook is called '9'"),
        ("[tool.grader.extensions]\n100 = 5", r"extensions\.100\] must be a table"),
        ("late_penalty_per_day = 10", "share of the notebook's maximum, from 0 to 1"),
        ("late_penalty_cap = -0.5", "share of the notebook's maximum, from 0 to 1"),
        ("late_grace_minutes = -1", "late_grace_minutes must be from 0"),
        ("late_grace_minutes = inf", "late_grace_minutes must be from 0"),
    ],
)
def test_a_wrong_late_policy_is_a_one_line_config_error(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        load_config(course(tmp_path, table))
    assert "\n" not in str(error.value)


def test_points_are_read_from_the_checks_source_without_importing_it(tmp_path: Path) -> None:
    root = course(tmp_path, "")
    (root / "checks").mkdir()
    checks = root / "checks" / "01_nb.py"
    checks.write_text(
        "import pytest\nfrom pytest import mark\nraise SystemExit('never run')\n"
        "@pytest.mark.grade('cell', points=2.5)\ndef test_a(student): ...\n"
        "@mark.grade('cell')\ndef test_b(student): ...\n"
        "def helper(): ...\n"
    )
    assert notebook_maxima(load_config(root)) == {"01_nb": 3.5}
    checks.write_text(
        "import pytest\nP = 2\n@pytest.mark.grade('cell', points=P)\ndef test_a(): ...\n"
    )
    with pytest.raises(CourseError, match=r"check test_a needs @pytest\.mark\.grade"):
        notebook_maxima(load_config(root))
