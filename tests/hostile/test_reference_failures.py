"""A reference solution that fails is the course's error, never a student's lost points, and
only good reference runs are cached (a timeout on a busy machine is not kept for the class)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grader.assign import assign
from grader.cli import main
from grader.config import load_config
from grader.gradebook import Gradebook
from grader.runner import ExecutedNotebook
from tests.conftest import MINI_CHECKS, mini_solution, submission, write

pytestmark = pytest.mark.slow


def course_with_solution(root: Path, first: str) -> Path:
    """A one-notebook miniature course whose solution's `first` cell is `first`."""
    (root / "checks").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[tool.grader]\ndevice = "cpu"\nnotebook_timeout = 60\n', encoding="utf-8"
    )
    (root / "checks" / "01_mini.py").write_text(MINI_CHECKS, encoding="utf-8")
    write(mini_solution(first=first), root / "solutions", "01_mini")
    assign(load_config(root))
    return root


def cached_references(root: Path) -> list[Path]:
    return sorted((root / ".grader-cache" / "references").glob("*.json"))


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_reference_that_times_out_is_a_course_error_and_is_not_cached(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = course_with_solution(
        tmp_path / "course", "import time\ntime.sleep(2.5)\nanswer = 21 * scale"
    )
    student = submission(tmp_path / "class" / "alice", "answer = 21 * scale")  # quick, right
    course = ["--course", str(root)]
    assert main([*course, "check", str(student), "--cell-timeout", "1"]) == 2
    err = one_line_error(capsys)
    assert f"the reference solution failed: {root / 'solutions' / '01_mini.ipynb'} on " in err
    assert "cell `first` did not finish within 1 s" in err and "nothing was cached" in err
    assert cached_references(root) == []
    # The same class, graded: nothing is recorded against the student.
    db = str(tmp_path / "gradebook.db")
    assert main([*course, "grade", str(tmp_path / "class"), "--db", db, "--cell-timeout", "1"]) == 2
    assert "the reference solution failed" in capsys.readouterr().err
    with Gradebook(db) as gradebook:
        assert gradebook.run_count() == 0
    # With time enough, on the same cache: full marks, and both references are kept.
    assert main([*course, "check", str(student), "--cell-timeout", "20"]) == 0
    assert "score 2/2" in capsys.readouterr().out
    assert len(cached_references(root)) == 2
    assert main([*course, "grade", str(tmp_path / "class"), "--db", db]) == 0
    with Gradebook(db) as gradebook:
        (graded,) = gradebook.latest()
    assert graded.result.score == graded.result.max_score == 2


# Solutions that fail in one way or another: the error names the variant, the cell or value,
# and what happened.
BROKEN_SOLUTIONS = {
    "raises on the hidden variant only": (
        "if scale != 2.0:\n    raise ValueError('no such scale')\nanswer = 21 * scale",
        "on the hidden variant: cell `first` raised ValueError: no such scale",
    ),
    "defines no value the checks read": (
        "result = 21 * scale",
        "on the notebook's own data: `answer` is not defined after its last cell",
    ),
    "a value that cannot be sent": (
        "class Unsendable(list):\n    def __iter__(self):\n        raise RuntimeError('no')\n"
        "answer = Unsendable()",
        "on the notebook's own data: `answer` could not be read: RuntimeError: no",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SOLUTIONS))
def test_a_failed_reference_names_what_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    first, expected = BROKEN_SOLUTIONS[case]
    root = course_with_solution(tmp_path / "course", first)
    student = submission(tmp_path / "alice", "answer = 21 * scale")
    assert main(["--course", str(root), "check", str(student)]) == 2
    err = one_line_error(capsys)
    assert "the reference solution failed: " in err and expected in err, err
    assert cached_references(root) == [] or "hidden" in case  # the good one is kept
    assert len(cached_references(root)) <= 1


def test_a_damaged_cache_entry_is_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = course_with_solution(tmp_path / "course", "answer = 21 * scale")
    student = submission(tmp_path / "alice", "answer = 21 * scale")
    assert main(["--course", str(root), "check", str(student)]) == 0
    for entry, damage in zip(cached_references(root), ['{"cells": ', '{"x": 1}'], strict=True):
        entry.write_text(damage, encoding="utf-8")
    assert main(["--course", str(root), "check", str(student)]) == 0
    assert "score 2/2" in capsys.readouterr().out
    for entry in cached_references(root):  # each written again, whole
        ExecutedNotebook.from_json(json.loads(entry.read_text(encoding="utf-8")))
