"""A roster whose every cell a student typed (names, ids, e-mail addresses, sections: formulas,
quotes, commas, line breaks, control and bidi characters, bytes that are no UTF-8, a name of
thousands of characters) exports to every format parseable, formula-free and agreeing on the
numbers."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from grader.export import (
    class_grades,
    write_canvas,
    write_csv,
    write_junit,
    write_moodle,
    write_results_json,
)
from grader.gradebook import Gradebook
from grader.roster import read_roster
from tests.test_export import make_course, read_rows, record

NASTY = [
    "=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "=cmd|' /C calc'!A0", "＝1", "＋1", "－1",
    '＠1', 'a,"b"\nc', "\x00\x1b[31mred", "\u202eevil", "x" * 5_000, "line\u2028break",
]  # fmt: skip
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def _roster_bytes() -> bytes:
    rows = [["id", "name", "email", "section"]]
    rows += [[f"{text[:20]}{i}", text, f"{text[:20]}@x.edu", text] for i, text in enumerate(NASTY)]
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8") + b"\xff\xfe,bad\xc3(,\xed\xa0\x80@x.edu,s\n"


def _cells(path: Path) -> list[list[str]]:
    rows = read_rows(path)
    assert rows and all(len(row) == len(rows[0]) for row in rows), path.name
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def test_a_hostile_roster_exports_safely_to_every_format(tmp_path: Path) -> None:
    config = make_course(tmp_path / "course")
    (tmp_path / "roster.csv").write_bytes(_roster_bytes())
    _, roster = read_roster(tmp_path / "roster.csv")
    assert len(roster) == len(NASTY) + 1
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        gradebook.import_roster(roster)
        for index, entry in enumerate(roster):
            record(gradebook, entry.lms_id, "01_a", [1.0, float(index % 2)], file=f"f{index}")
        grades = class_grades(gradebook, config)
    out = tmp_path / "out"
    out.mkdir()
    write_csv(grades, out / "grades.csv")
    write_canvas(grades, out / "canvas.csv", config)
    write_moodle(grades, out / "moodle.csv")
    write_junit(grades, out / "junit.xml")
    written = write_results_json(grades, out / "results")
    tables = {name: _cells(out / name) for name in ("grades.csv", "canvas.csv", "moodle.csv")}
    for name, rows in tables.items():
        for cell in (cell for row in rows for cell in row):
            assert _is_number(cell) or not cell.startswith(FORMULA_STARTS), (name, cell[:30])
    ElementTree.parse(out / "junit.xml")
    assert len(written) == len(roster)
    by_json = {}
    for path in written:
        data = json.loads(path.read_text(encoding="utf-8"))
        by_json[data["extra_data"]["student"]] = data["score"]
    # Only 01_a was handed in, so its final score is each student's total in every format.
    totals = {row[0]: row[-2] for row in tables["grades.csv"][1:]}
    canvas = {row[1]: row[5] for row in tables["canvas.csv"][2:]}
    moodle = {row[1]: row[3] for row in tables["moodle.csv"][1:]}
    assert totals == canvas == moodle and len(totals) == len(roster)
    assert sorted(float(v) for v in totals.values()) == sorted(by_json.values())
    assert set(by_json) == {entry.lms_id for entry in roster}
