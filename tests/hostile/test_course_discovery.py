"""The course is never found inside the work being graded: a student's pyproject.toml with a
`[tool.grader]` table and a `checks/` folder of their own must never choose the checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.cli import main
from grader.config import Config, load_config
from grader.gradebook import Gradebook
from tests.conftest import MINI_CHECKS, mini_solution, write

# A student's own checks: one that passes everything, and writes a mark when it is imported.
FORGED_CHECKS = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the grader ran the student's checks")
VALUES = ["answer"]
import pytest

@pytest.mark.grade("first", points=100)
def test_everything(student):
    pass
"""


def forged_course(folder: Path) -> Path:
    """A student's folder that looks like a course: pyproject.toml, checks/, solutions/."""
    (folder / "checks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text("[tool.grader]\ncell_timeout = 1\n", encoding="utf-8")
    (folder / "checks" / "01_mini.py").write_text(FORGED_CHECKS, encoding="utf-8")
    write(mini_solution(first="answer = 0"), folder / "solutions", "01_mini")
    write(mini_solution(first="answer = 0"), folder / "exercises", "01_mini")
    write(mini_solution(first="answer = 0"), folder, "01_mini")
    return folder


@pytest.fixture(autouse=True)
def no_course_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRADER_COURSE", raising=False)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# Ways to run the grader from inside a student's folder: (the folder to run in, below the
# student's; the command line, run there).
FROM_INSIDE = {
    "check the notebook": ("", ["check", "01_mini.ipynb"]),
    "check the folder": ("", ["check", "."]),
    "check the folder by its path": ("", ["check", "{student}"]),
    "check from a subfolder": ("exercises", ["check", "../01_mini.ipynb"]),
    "grade the class": ("", ["grade", "{student}/..", "--db", "{student}/../../g.db"]),
}


@pytest.mark.parametrize("broken", [False, True], ids=["forged", "unreadable pyproject"])
@pytest.mark.parametrize("case", sorted(FROM_INSIDE))
def test_a_course_inside_a_submission_is_never_used(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    broken: bool,
) -> None:
    student = forged_course(tmp_path / "class" / "mallory")
    if broken:  # never even read: it cannot stop the grader either
        (student / "pyproject.toml").write_bytes(b"[tool.grader\n\xff")
    below, argv = FROM_INSIDE[case]
    monkeypatch.chdir(student / below)
    code = main([arg.format(student=student) for arg in argv])
    err = one_line_error(capsys)
    assert code == 2 and "no course folder" in err and "--course DIR or GRADER_COURSE=DIR" in err
    assert not (student / "checks" / "IMPORTED").exists()
    assert not (student / ".grader-cache").exists() and not (student / ".grader-secret").exists()


def test_no_course_anywhere_says_how_to_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(mini_solution(), tmp_path, "01_mini")
    monkeypatch.chdir(tmp_path)
    assert main(["check", "01_mini.ipynb"]) == 2
    err = one_line_error(capsys)
    assert "no course folder (one whose pyproject.toml has a [tool.grader] table)" in err
    assert f"at or above {tmp_path.resolve()};" in err
    assert "name it with --course DIR or GRADER_COURSE=DIR" in err


def test_a_named_course_must_be_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--course", str(tmp_path), "check"]) == 2
    assert "is not a course folder" in one_line_error(capsys)


def test_exports_need_no_course(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Gradebook(str(tmp_path / "g.db")).close()  # an empty one, as `grader grade` leaves it
    code = main(["export", "--db", str(tmp_path / "g.db"), "--csv", str(tmp_path / "g.csv")])
    assert code == 0 and (tmp_path / "g.csv").is_file()


def course(folder: Path) -> Path:
    (folder / "checks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text("[tool.grader]\n", encoding="utf-8")
    (folder / "checks" / "01_mini.py").write_text(MINI_CHECKS, encoding="utf-8")
    return folder


# Where the course is, where the grader runs and what it grades: the course found is the
# instructor's, never one inside what is graded (paths relative to tmp_path).
FOUND = {
    "a student kit: check its exercises from its root": ("kit", "kit", ["kit/exercises"]),
    "the main command: check solutions/": ("course", "course", ["course/solutions"]),
    "grade a zip lying in the course": ("course", "course", ["course/class.zip"]),
    "grade a class folder in the course": ("course", "course", ["course/class"]),
    "check from a student's folder in the course": (
        "course", "course/class/mallory", ["course/class/mallory"],
    ),
    "grade from a student's folder in the course": (
        "course", "course/class/mallory", ["course/class"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FOUND))
def test_the_instructors_course_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    root, here, graded = FOUND[case]
    course(tmp_path / root)
    forged_course(tmp_path / "course" / "class" / "mallory")
    (tmp_path / here).mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path / here)
    submitted = [tmp_path / path for path in graded]
    assert load_config(submitted=submitted).root == (tmp_path / root).resolve()


@pytest.mark.slow
def test_grading_from_a_students_folder_uses_the_instructors_checks(
    mini_course: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    student = forged_course(Path(mini_course.root) / "class" / tmp_path.name)
    monkeypatch.chdir(student)
    assert main(["check", "01_mini.ipynb", "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "score 1/2" in out and "wrong answer" in out, out
    assert not (student / "checks" / "IMPORTED").exists()


@pytest.mark.slow
def test_a_kit_checks_its_exercises_from_its_root(
    mini_course: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(mini_course.root)
    assert main(["check", "exercises/01_mini.ipynb", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert "score 0/2" in captured.out and "error" not in captured.err, captured
