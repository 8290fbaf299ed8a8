"""The class roster: Canvas, Moodle and plain CSV class lists, kept in the gradebook, and every
roster student in the CSV export, with "missing" apart from 0."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import pytest

from grader.cli import main
from grader.errors import RosterError
from grader.gradebook import Gradebook
from grader.results import PASSED, CheckResult, NotebookResult
from grader.roster import RosterEntry, match_roster, read_roster
from grader.submissions import Submission
from tests.conftest import ROOT, make_cell, make_notebook, write

PLAIN = "id,name,email,section\n4711,Jane Doe,jane@example.edu,A\n4712,Jane Doe,jd2@example.edu,B\n"
CANVAS = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Autodiff (123)\n"
    "    Points Possible,,,,,10\n"
    '"Doe, Jane",4711,s1,jane@example.edu,Autodiff A,8\n'
    "\"=cmd|' /C calc'!A0\",4713,s3,x@example.edu,Autodiff A,\n"
)
MOODLE = (
    "\ufeffIdentifier,Full name,Email address,Status,Grade\n"
    "Participant 4711,Jane Doe,jane@example.edu,Submitted,\n"
    "Participant 4712,Jane Doe,jd2@example.edu,No submission,\n"
)


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        (PLAIN, "plain", [RosterEntry("4711", "Jane Doe", "jane@example.edu", "A"),
                          RosterEntry("4712", "Jane Doe", "jd2@example.edu", "B")]),
        (CANVAS, "canvas", [RosterEntry("4711", "Doe, Jane", "jane@example.edu", "Autodiff A"),
                            RosterEntry("4713", "=cmd|' /C calc'!A0", "x@example.edu",
                                        "Autodiff A")]),
        (MOODLE, "moodle", [RosterEntry("4711", "Jane Doe", "jane@example.edu"),
                            RosterEntry("4712", "Jane Doe", "jd2@example.edu")]),
    ],
)  # fmt: skip
def test_each_lms_roster_is_read_by_its_id(
    tmp_path: Path, text: str, kind: str, expected: list[RosterEntry]
) -> None:
    (tmp_path / "roster.csv").write_text(text, encoding="utf-8")
    assert read_roster(tmp_path / "roster.csv") == (kind, expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,mail\nann,a@x\n", "not a roster this grader reads"),
        ("", "not a roster this grader reads"),
        (PLAIN + "4711,Someone Else,,\n", "the id '4711' is given to two students"),
    ],
)
def test_a_roster_that_cannot_be_read_says_why(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "roster.csv").write_text(text, encoding="utf-8")
    with pytest.raises(RosterError, match=message):
        read_roster(tmp_path / "roster.csv")
    with pytest.raises(RosterError, match="cannot read the roster"):
        read_roster(tmp_path / "missing.csv")


def test_roster_text_is_one_clean_line(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text('id,name,email,section\n7,"Ann\x1b[2J\nLee",,\n')
    assert read_roster(tmp_path / "r.csv")[1] == [RosterEntry("7", "Ann\\x1b[2J\\x0aLee")]


def test_the_csv_lists_every_roster_student_and_missing_apart_from_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no course: the maxima are the runs'
    db = str(tmp_path / "g.db")
    (tmp_path / "roster.csv").write_text(PLAIN + "4714,Max Null,,A\n", encoding="utf-8")
    assert main(["roster", "import", str(tmp_path / "roster.csv"), "--db", db]) == 0
    assert "3 student(s) in the roster (plain format)" in capsys.readouterr().out
    with Gradebook(db) as gradebook:
        for student, score in (("4711", 2.0), ("4714", 0.0), ("stray", 1.0)):
            record(gradebook, student, score, 1)
    assert main(["export", "--db", db, "--csv", str(tmp_path / "grades.csv")]) == 0
    assert "not on the roster: stray" in capsys.readouterr().err
    with (tmp_path / "grades.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["4711", "4712", "4714", "stray"]
    assert (rows["4711"]["name"], rows["4711"]["01_a total"], rows["4711"]["total"]) == (
        "Jane Doe", "2.0", "2.0",
    )  # fmt: skip
    assert (
        rows["4712"]["01_a total"] == "missing" and rows["4712"]["01_a::cell::check"] == "missing"
    )
    assert rows["4714"]["01_a total"] == "0.0"  # handed in and scored 0: not missing
    assert rows["4712"]["max_total"] == rows["4711"]["max_total"] == "2.0"


def test_importing_again_replaces_the_roster(tmp_path: Path) -> None:
    with Gradebook(str(tmp_path / "g.db")) as gradebook:
        gradebook.import_roster([RosterEntry("1", "Ann"), RosterEntry("2", "Bob")])
        gradebook.import_roster([RosterEntry("2", "Bob B.", "b@x", "S")])
        assert gradebook.roster() == [RosterEntry("2", "Bob B.", "b@x", "S")]


def record(gradebook: Gradebook, student: str, score: float, day: int) -> None:
    check = CheckResult("01_a", "cell", "check", 2.0, score, PASSED)
    sha = f"{student}{day}".ljust(64, "0")[:64]
    submission = Submission(
        student, "01_a", Path("x"), f"{student}/01_a.ipynb", sha, datetime(2026, 11, day)
    )
    gradebook.record(submission, NotebookResult("01_a", "x", (check,)), "1", "v")


def test_lms_participant_numbers_match_the_roster_in_every_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no course: the maxima are the runs'
    db, out = str(tmp_path / "g.db"), tmp_path / "out"
    with Gradebook(db) as gradebook:
        gradebook.import_roster(read_roster_text(tmp_path, MOODLE))
        record(gradebook, "Jane Doe_4711", 2.0, 1)  # Moodle's download names
        record(gradebook, "Jane Doe_4712", 0.0, 1)  # same display name: another student
        record(gradebook, "4712", 1.0, 2)  # a later resubmission, in a folder named by the id
        record(gradebook, "Jane Doe_9999", 1.0, 1)  # a participant the roster does not list
    exports = ["--csv", str(out / "g.csv"), "--results-dir", str(out / "r")]
    assert main(["export", "--db", db, *exports]) == 0
    assert "not on the roster: Jane Doe_9999" in capsys.readouterr().err
    with (out / "g.csv").open(newline="", encoding="utf-8") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    assert list(rows) == ["4711", "4712", "Jane Doe_9999"]
    assert (rows["4711"]["name"], rows["4711"]["total"]) == ("Jane Doe", "2.0")
    assert (rows["4712"]["name"], rows["4712"]["total"]) == ("Jane Doe", "1.0")
    assert sorted(path.name for path in (out / "r").iterdir()) == ["4711", "4712", "Jane_Doe_9999"]


def read_roster_text(tmp_path: Path, text: str) -> list[RosterEntry]:
    (tmp_path / "roster.csv").write_text(text, encoding="utf-8")
    return read_roster(tmp_path / "roster.csv")[1]


def test_the_class_page_shows_every_roster_student_under_the_roster_id(tmp_path: Path) -> None:
    db, out = str(tmp_path / "g.db"), tmp_path / "feedback"
    with Gradebook(db) as gradebook:
        gradebook.import_roster(read_roster_text(tmp_path, MOODLE))
        record(gradebook, "Jane Doe_4711", 2.0, 1)
    assert main(["feedback", "--db", db, "--out", str(out)]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert '<th scope="row">4711 <span class="name">Jane Doe</span></th>' in page
    assert '<th scope="row">4712 <span class="name">Jane Doe</span></th>' in page
    assert (out / "4711" / "01_a.html").is_file() and not (out / "4712").exists()


def test_grade_reports_files_that_match_no_roster_student_and_records_none_of_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, folder = str(tmp_path / "g.db"), tmp_path / "class"
    with Gradebook(db) as gradebook:
        gradebook.import_roster(read_roster_text(tmp_path, PLAIN))
    homework = make_notebook([make_cell("x = 1", "a")])  # no such exercise: no kernel runs
    write(homework, folder / "4711", "homework")
    write(homework, folder, "01_autograd_basics")  # no student in the name: not student `01`
    write(homework, folder / "stranger", "homework")  # off the roster
    code = main(["--course", str(ROOT), "grade", str(folder), "--db", db])
    out, err = capsys.readouterr()
    assert code == 1
    assert "3 notebook(s) found, 1 graded and recorded" in out
    assert "2 matched to no student" in out
    lines = [line for line in err.splitlines() if line.startswith("no student: ")]
    assert lines == [
        "no student: 01_autograd_basics.ipynb: the file is named after the notebook, not after "
        "a student: put each student's notebooks in a folder (or a zip) named after the "
        "student, or name files <student>_<anything>_<notebook>.ipynb",
        "no student: stranger/homework.ipynb: student 'stranger' is not on the roster (by id, "
        "participant number or e-mail), so it was not graded",
    ]
    with Gradebook(db) as gradebook:
        assert [g.student for g in gradebook.latest()] == ["4711"]


def test_a_key_that_is_a_roster_email_address_is_that_student_in_the_exports(
    tmp_path: Path,
) -> None:
    with Gradebook(str(tmp_path / "g.db")) as gradebook:
        record(gradebook, "JANE@example.edu", 1.0, 1)  # a folder named by the e-mail address
        record(gradebook, "someone@example.edu", 1.0, 1)
        graded = match_roster(gradebook.latest(), read_roster_text(tmp_path, PLAIN))
    assert [g.student for g in graded] == ["4711", "someone@example.edu"]
