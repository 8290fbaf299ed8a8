"""A student's display name cannot take them off the roster: a Canvas student named after
Canvas's own "Points Possible" row stays a student (that row is told by its empty ID)."""

from __future__ import annotations

from pathlib import Path

from grader.roster import read_roster


def test_a_student_named_points_possible_stays_on_the_roster(tmp_path: Path) -> None:
    (tmp_path / "canvas.csv").write_text(
        "Student,ID,SIS User ID,SIS Login ID,Section,HW1 (1)\n"
        "    Points Possible,,,,,10\n"
        "Points Possible,4711,,pp@example.edu,A,\n"
        '"Doe, Jane (points possible)",4712,,jane@example.edu,A,\n',
        encoding="utf-8",
    )
    kind, roster = read_roster(tmp_path / "canvas.csv")
    assert kind == "canvas"
    assert [entry.lms_id for entry in roster] == ["4711", "4712"]
