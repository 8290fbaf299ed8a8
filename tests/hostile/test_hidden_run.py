"""The hidden variant stays hidden: of its run a student learns only whether each check held
and a fixed category, in every output a student sees; the instructor's gradebook keeps the
hidden run's own message and the seeds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grader.cli import main
from grader.config import Config
from grader.gradebook import Gradebook
from tests.conftest import submission

pytestmark = pytest.mark.slow

# Right on the notebook's own data (scale 2); on the hidden variant the first prints the
# variant's data into its error, the second was typed in.
STUDENTS = {
    "alice": (
        "if scale != 2.0:\n"
        "    raise type(f'Leak{int(scale)}', (Exception,), {})(f'leak scale={scale} seed={seed}')\n"
        "answer = 21 * scale",
        "its cell raised an error there",
    ),
    "bob": ("answer = 42.0", "its result is wrong there"),
}
PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def everything_under(folder: Path) -> str:
    return "\n".join(PNG.sub("", path.read_text()) for path in folder.rglob("*") if path.is_file())


def student_outputs(course: Config, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """All a student may see of the class: `check` (terminal, JSON, JUnit) of each notebook,
    and the class's exports and feedback pages."""
    out = folder / "out"
    out.mkdir()
    root = ["--course", str(course.root)]
    db = ["--db", str(folder / "gradebook.db")]
    for student in STUDENTS:
        notebook = folder / "class" / student / "01_mini.ipynb"
        json_, junit = out / f"{student}.json", out / f"{student}.xml"
        assert (
            main([*root, "check", str(notebook), "--json", str(json_), "--junit", str(junit)]) == 1
        )
    assert main([*root, "grade", str(folder / "class"), *db]) == 0
    exports = ["--csv", str(out / "grades.csv"), "--results-dir", str(out / "results")]
    assert main([*root, "export", *db, *exports, "--junit", str(out / "class.xml")]) == 0
    assert main([*root, "feedback", *db, "--out", str(out / "feedback")]) == 0
    captured = capsys.readouterr()
    return "\n".join([captured.out, captured.err, everything_under(out)])


def test_nothing_of_the_hidden_run_reaches_a_student(
    mini_course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for student, (source, _) in STUDENTS.items():
        submission(tmp_path / "class" / student, source)
    seen = student_outputs(mini_course, tmp_path, capsys)
    with Gradebook(str(tmp_path / "gradebook.db")) as gradebook:
        graded = {g.student: g.result for g in gradebook.latest()}
    for student, (_, category) in STUDENTS.items():
        result = graded[student]
        (failed,) = [check for check in result.checks if not check.passed]
        assert failed.grade_id == "first" and category in failed.message
        assert failed.message.startswith("passes on the notebook's own data but not on the hidden")
        own_seed, hidden_seed = result.seeds
        assert str(hidden_seed) not in seen, f"{student}'s hidden seed is shown"
        assert f"seeds {own_seed}" not in seen
    assert "scale=3.0" not in seen, "the hidden run's error text is shown"
    assert "Leak3" not in seen, "the hidden run's error name is shown"
    assert "its cell raised an error there" in seen and "its result is wrong there" in seen
    # The instructor keeps what happened there.
    (alice,) = [check for check in graded["alice"].checks if not check.passed]
    hidden_seed = graded["alice"].seeds[1]
    assert f"raised Leak3: leak scale=3.0 seed={hidden_seed}" in alice.hidden_message
    (bob,) = [check for check in graded["bob"].checks if not check.passed]
    assert bob.hidden_message == "the hidden variant: wrong answer"
