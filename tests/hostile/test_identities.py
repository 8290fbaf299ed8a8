"""Identities cannot collide: a student who picks a folder or file name after another student's
(its safe form, its hashed form, another case, the summary page's name), or two LMS participants
with one display name, never share a gradebook entry, an exported results.json or a feedback page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.cli import main
from grader.config import Config
from grader.export import student_slugs
from grader.gradebook import Gradebook
from tests.conftest import mini_solution, submission, write

pytestmark = pytest.mark.slow

RIGHT = "answer = 21 * scale"
WRONG = "answer = 0"


def test_chosen_names_never_take_another_students_place(
    mini_course: Config, tmp_path: Path
) -> None:
    folder, db, out = tmp_path / "class", str(tmp_path / "gb.db"), tmp_path / "out"
    # "Ann Lee" and "Ann_Lee" share the safe form `Ann_Lee`; mallory names her folder after the
    # hashed form the first of them gets, and eve after the summary page and another case.
    taken = student_slugs(["Ann Lee", "Ann_Lee"])["Ann Lee"]
    students = {"Ann Lee": RIGHT, "Ann_Lee": RIGHT, taken: WRONG, "INDEX.HTML": WRONG}
    for name, first in students.items():
        submission(folder / name, first)
    # Two Moodle participants with one display name, each handing in a flat file.
    for participant, first in (("4711", RIGHT), ("4712", WRONG)):
        name = f"Jane Doe_{participant}_assignsubmission_file_01_mini"
        write(mini_solution(first=first), folder, name)
    course = ["--course", str(mini_course.root)]
    assert main([*course, "grade", str(folder), "--db", db]) == 0
    assert main([*course, "export", "--db", db, "--results-dir", str(out / "results")]) == 0
    assert main([*course, "feedback", "--db", db, "--out", str(out / "feedback")]) == 0

    with Gradebook(db) as gradebook:
        scores = {g.student: g.result.score for g in gradebook.latest()}
    expected = {name: 2.0 if first == RIGHT else 1.0 for name, first in students.items()}
    assert scores == {**expected, "Jane Doe_4711": 2.0, "Jane Doe_4712": 1.0}

    results = {
        json.loads(path.read_text())["extra_data"]["student"]: json.loads(path.read_text())
        for path in (out / "results").glob("*/results.json")
    }
    assert {name: r["score"] for name, r in results.items()} == scores
    pages = [p for p in (out / "feedback").glob("*/01_mini.html")]
    assert len(pages) == len(scores), "a feedback page was written over another's"
    assert len({p.parent.name.lower() for p in pages}) == len(scores)
    index = (out / "feedback" / "index.html").read_text(encoding="utf-8")
    assert "<table" in index, "a student's folder replaced the class summary"
