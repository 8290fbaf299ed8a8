"""One student's zip bomb (entries that inflate to the notebook limit each) spends that
student's share of the extraction budget only: the other students' notebooks are extracted and
graded, in a class's zip of students' zips and in a folder of them. (The limits are made small
here; the rule is the same at their real sizes.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from grader import submissions
from grader.submissions import open_submissions
from tests.test_submissions import zip_bytes

EXERCISES = [f"{n:02d}_x" for n in range(10)]
NOTEBOOK_LIMIT = 100_000


BOMB = zip_bytes({f"{name}.ipynb": b"\0" * NOTEBOOK_LIMIT for name in EXERCISES})
HONEST = zip_bytes({"00_x.ipynb": b"{}", "01_x.ipynb": b"{}"})


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submissions, "MAX_NOTEBOOK_BYTES", NOTEBOOK_LIMIT)
    monkeypatch.setattr(submissions, "MAX_ARCHIVE_BYTES", 5 * NOTEBOOK_LIMIT)
    monkeypatch.setattr(submissions, "MAX_STUDENT_ARCHIVE_BYTES", 3 * NOTEBOOK_LIMIT)


def _students(source: Path) -> dict[str, list[str]]:
    with open_submissions(source, EXERCISES) as found:
        problems: dict[str, list[str]] = {}
        for item in found:
            problems.setdefault(item.student, []).append(item.problem)
    return problems


def _assert_only_the_bomb_is_cut(problems: dict[str, list[str]]) -> None:
    assert problems["bob"] == ["", ""] and problems["carol"] == ["", ""]
    cut = [p for p in problems["a_mallory"] if p]
    assert len(cut) == len(EXERCISES) - 3
    assert all("this student's zip holds more than" in p for p in cut)


def test_a_zip_bomb_in_a_class_zip_spends_its_students_share_only(tmp_path: Path) -> None:
    students = {"a_mallory.zip": BOMB, "bob.zip": HONEST, "carol.zip": HONEST}
    (tmp_path / "class.zip").write_bytes(zip_bytes(students))
    _assert_only_the_bomb_is_cut(_students(tmp_path / "class.zip"))


def test_a_zip_bomb_in_a_folder_spends_its_students_share_only(tmp_path: Path) -> None:
    for name, data in {"a_mallory.zip": BOMB, "bob.zip": HONEST, "carol.zip": HONEST}.items():
        (tmp_path / name).write_bytes(data)
    _assert_only_the_bomb_is_cut(_students(tmp_path))


def test_a_students_zip_of_hundreds_of_notebooks_gives_a_hundred_and_one_line(
    tmp_path: Path,
) -> None:
    many = zip_bytes({f"junk/{n:05d}.ipynb": b"{}" for n in range(250)})
    (tmp_path / "class.zip").write_bytes(zip_bytes({"mallory.zip": many, "bob.zip": HONEST}))
    problems = _students(tmp_path / "class.zip")
    assert problems["bob"] == ["", ""]
    assert len(problems["mallory"]) == submissions.MAX_STUDENT_NOTEBOOKS + 1
    assert problems["mallory"][-1].startswith("150 more notebooks in this zip were not graded")
