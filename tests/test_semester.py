"""A semester end to end: a roster, a class of mixed LMS layouts graded once, a due date with a
late penalty, an override; every export then agrees on every student's raw score, penalty,
override and total, and the feedback pages show the same."""

from __future__ import annotations

import csv
import json
import os
import shutil
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.config import load_config
from grader.gradebook import Gradebook
from grader.standing import Standing, standings
from tests.conftest import ROOT, edit_solution, solution

pytestmark = pytest.mark.slow

NOTEBOOK = "03_linear_regression_module"
UNGRADED = "01_autograd_basics"  # in the course, handed in by no one
DUE = datetime(2026, 10, 1, 21, 59, tzinfo=timezone.utc)
ROSTER = """id,name,email,section
100,Ann Lee,ann@example.edu,A
200,Ben Ode,ben@example.edu,A
300,Sam Roe,sam.roe@example.edu,B
400,Sam Roe,sam.roe2@example.edu,B
500,Jane Doe,jane@example.edu,B
600,Zoe Park,zoe@example.edu,B
"""
# student -> (raw, late days, penalty, override, final); 0.1 of the maximum (6) a day late
EXPECTED = {
    "100": (6.0, 2, 1.2, None, 4.8),  # a folder, handed in a day and an hour late
    "200": (3.0, 0, 0.0, 5.0, 5.0),  # their own zip; overridden
    "300": (6.0, 0, 0.0, None, 6.0),  # Moodle, "Sam Roe"
    "400": (3.0, 0, 0.0, None, 3.0),  # Moodle, another "Sam Roe"
    "500": (6.0, 1, 0.6, None, 5.4),  # Canvas's late mark, though its file time is on time
    "600": (None, 0, 0.0, None, None),  # handed in nothing
}
MAX_TOTAL = 12.0  # 6 points in each of the two course notebooks


@dataclass(frozen=True)
class Semester:
    root: Path
    db: str
    out: Path
    graded_max: dict[str, float]
    table: dict[str, dict[str, Standing]]


def _course(folder: Path, cache: Path) -> Path:
    for kind, suffix in (("solutions", "ipynb"), ("exercises", "ipynb"), ("checks", "py")):
        (folder / kind).mkdir(parents=True)
        for name in (NOTEBOOK, UNGRADED):
            shutil.copy(ROOT / kind / f"{name}.{suffix}", folder / kind / f"{name}.{suffix}")
    (folder / "pyproject.toml").write_text(
        f'[tool.grader]\ncache_dir = "{cache}"\nlate_penalty_per_day = 0.1\n'
        f'late_grace_minutes = 30\n[tool.grader.due]\n"{NOTEBOOK}" = 2026-10-01T23:59:00+02:00\n'
    )
    return folder


def _hand_in(folder: Path) -> None:
    right = nbformat.writes(solution(NOTEBOOK))
    wrong = nbformat.writes(
        edit_solution(NOTEBOOK, "training_loop", "optimizer.zero_grad()", "pass")
    )
    on_time = (DUE - timedelta(hours=3)).timestamp()
    files = {
        f"100/{NOTEBOOK}.ipynb": (right, (DUE + timedelta(days=1, hours=1)).timestamp()),
        f"Sam Roe_300_assignsubmission_file_{NOTEBOOK}.ipynb": (right, on_time),
        f"Sam Roe_400_assignsubmission_file_{NOTEBOOK}.ipynb": (wrong, on_time),
        f"doejane_late_500_67890_{NOTEBOOK}.ipynb": (right, on_time),
    }
    for name, (text, when) in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        os.utime(path, (when, when))
    with zipfile.ZipFile(folder / "200.zip", "w") as archive:  # a student's one upload
        entry = zipfile.ZipInfo(f"week3/{NOTEBOOK}.ipynb", date_time=(2026, 10, 1, 12, 0, 0))
        archive.writestr(entry, wrong)
    os.utime(folder / "200.zip", (on_time, on_time))  # handed in when the zip was


@pytest.fixture(scope="module")
def semester(tmp_path_factory: pytest.TempPathFactory, reference_cache: Path) -> Semester:
    work = tmp_path_factory.mktemp("semester")
    root, db, out = _course(work / "course", reference_cache), str(work / "g.db"), work / "out"
    (work / "roster.csv").write_text(ROSTER)
    _hand_in(work / "class")
    course = ["--course", str(root)]
    assert main([*course, "roster", "import", str(work / "roster.csv"), "--db", db]) == 0
    assert main([*course, "grade", str(work / "class"), "--db", db]) == 0
    assert main([*course, "override", "200", NOTEBOOK, "--score", "5", "--reason",
                 "explained it in the oral exam", "--by", "prof", "--db", db]) == 0  # fmt: skip
    exports = {
        "--csv": "grades.csv", "--canvas": "canvas.csv", "--moodle": "moodle.csv",
        "--results-dir": "results", "--junit": "class.xml",
    }  # fmt: skip
    targets = [part for flag, name in exports.items() for part in (flag, str(out / name))]
    assert main([*course, "export", "--db", db, *targets]) == 0
    assert main([*course, "feedback", "--db", db, "--out", str(out / "pages")]) == 0
    with Gradebook(db) as gradebook:
        graded_max = {g.result.notebook: g.result.max_score for g in gradebook.latest()}
        table = standings(gradebook, load_config(root))
    return Semester(root, db, out, graded_max, table)


def expected(student: str) -> tuple[float | None, int, float, float | None, float | None]:
    return EXPECTED[student]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def number(text: str | None) -> float | None:
    return None if text in (None, "", "missing", "None") else float(text)


def test_the_standings_follow_the_roster_the_late_policy_and_the_override(
    semester: Semester,
) -> None:
    assert sorted(semester.table) == sorted(EXPECTED), "every roster student, no one else"
    for student, (raw, days, penalty, override, final) in EXPECTED.items():
        standing = semester.table[student][NOTEBOOK]
        got = (standing.raw, standing.late_days, standing.penalty, standing.override)
        assert got == (raw, days, penalty, override), student
        assert standing.final == (None if final is None else pytest.approx(final)), student
        assert semester.table[student][UNGRADED].status == "missing"
    assert semester.table["200"][NOTEBOOK].status == "overridden", "the regrade did not undo it"
    # the maximum read from the checks' source is the one grading recorded
    assert semester.graded_max == {NOTEBOOK: semester.table["100"][NOTEBOOK].maximum}


def test_the_csv(semester: Semester) -> None:
    table = {row["student"]: row for row in rows(semester.out / "grades.csv")}
    assert sorted(table) == sorted(EXPECTED)
    assert table["300"]["name"] == table["400"]["name"] == "Sam Roe"
    for student, (raw, days, penalty, override, final) in EXPECTED.items():
        row = table[student]
        assert number(row[f"{NOTEBOOK} raw"]) == raw, student
        assert number(row[f"{NOTEBOOK} late days"] or "0") == days, student
        assert number(row[f"{NOTEBOOK} penalty"] or "0") == penalty, student
        assert number(row[f"{NOTEBOOK} override"]) == override, student
        assert number(row[f"{NOTEBOOK} total"]) == (None if final is None else pytest.approx(final))
        assert number(row["total"]) == pytest.approx(final or 0.0)
        assert number(row["max_total"]) == MAX_TOTAL
        assert row[f"{UNGRADED} total"] == "missing"
    assert table["600"][f"{NOTEBOOK} raw"] == "missing"


def test_canvas_and_moodle(semester: Semester) -> None:
    canvas = rows(semester.out / "canvas.csv")
    assert list(canvas[0])[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert canvas[0]["Student"] == "Points Possible" and number(canvas[0][NOTEBOOK]) == 6.0
    moodle = {row["ID number"]: row for row in rows(semester.out / "moodle.csv")}
    for row in canvas[1:]:
        final = expected(row["ID"])[4]
        assert number(row[NOTEBOOK]) == (None if final is None else pytest.approx(final))
        assert number(moodle[row["ID"]][NOTEBOOK]) == number(row[NOTEBOOK]), row["ID"]
    assert sorted(row["ID"] for row in canvas[1:]) == sorted(EXPECTED) == sorted(moodle)


def test_gradescope_results_and_junit(semester: Semester) -> None:
    results = {}
    for path in (semester.out / "results").glob("*/results.json"):
        data = json.loads(path.read_text())
        results[data["extra_data"]["student"]] = data
    suites = {
        suite.get("name"): {p.get("name"): p.get("value") for p in suite.iter("property")}
        for suite in ET.parse(semester.out / "class.xml").getroot().iter("testsuite")
    }
    for student, (raw, days, penalty, override, final) in EXPECTED.items():
        if raw is None:
            assert student not in results and f"{student}/{NOTEBOOK}" not in suites
            continue
        data = results[student]
        shown = data["extra_data"]["standings"][NOTEBOOK]
        assert (shown["raw"], shown["penalty"], shown["override"]) == (raw, penalty, override)
        assert data["score"] == pytest.approx(final) and data["max_score"] == MAX_TOTAL
        junit = suites[f"{student}/{NOTEBOOK}"]
        assert (number(junit["raw"]), number(junit["penalty"])) == (raw, penalty), student
        assert number(junit["late_days"]) == days, student
        assert number(junit["override"]) == override and number(junit["final"]) == final


def test_the_pages(semester: Semester) -> None:
    ann = (semester.out / "pages" / "100" / f"{NOTEBOOK}.html").read_text(encoding="utf-8")
    assert 'id="penalty">-1.2</td>' in ann and '<span id="final">4.8</span> / 6' in ann
    ben = (semester.out / "pages" / "200" / f"{NOTEBOOK}.html").read_text(encoding="utf-8")
    assert 'id="raw">3</td>' in ben and 'id="override">5</td>' in ben
    assert "explained it in the oral exam (prof," in ben
    index = (semester.out / "pages" / "index.html").read_text(encoding="utf-8")
    assert index.count('<tr class="student">') == len(EXPECTED)
    assert ">L2</sup>" in index and ">L1</sup>" in index and 'class="override"' in index
