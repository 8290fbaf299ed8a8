"""`grader grade`: a class into the gradebook, incrementally, surviving bad input and Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader.batch import grade_class
from grader.cli import main
from grader.config import Config
from grader.gradebook import Gradebook
from grader.standing import notebook_maxima
from tests.conftest import edit_solution, own_run_dirs, solution, submission, write

pytestmark = pytest.mark.slow

RIGHT = "answer = 21 * scale"
WRONG = "answer = 42"


def make_class(root: Path) -> Path:
    """alice: a folder, one notebook right and one wrong; bob: an LMS file; carol: a stray file."""
    submission(root / "alice", RIGHT, "01_mini")
    submission(root / "alice", WRONG, "02_mini")
    shutil.move(submission(root, RIGHT, "01_mini"), root / "bob_4711_01_mini-1.ipynb")
    submission(root / "carol", RIGHT, "homework")
    return root


def scores(db: str) -> dict[tuple[str, str], float]:
    with Gradebook(db) as gradebook:
        return {(g.student, g.result.notebook): g.result.score for g in gradebook.latest()}


def test_a_class_is_graded_once_then_incrementally(mini_course: Config, tmp_path: Path) -> None:
    folder, db = make_class(tmp_path / "class"), str(tmp_path / "gradebook.db")
    with Gradebook(db) as gradebook:
        first = grade_class(folder, mini_course, gradebook)
        again = grade_class(folder, mini_course, gradebook)
        submission(folder / "alice", RIGHT, "02_mini")  # alice fixes her second notebook
        fixed = grade_class(folder, mini_course, gradebook)
        regraded = grade_class(folder, mini_course, gradebook, regrade=True)
        runs = gradebook.run_count()
    assert (first.collected, first.recorded, first.skipped) == (4, 4, 0)
    assert len(first.problems) == 1 and first.problems[0].startswith("carol: ")
    assert "no exercise is called 'homework'" in first.problems[0]
    assert (again.recorded, again.skipped) == (0, 4)
    assert (fixed.recorded, fixed.skipped) == (1, 3)
    assert (regraded.recorded, regraded.skipped) == (4, 0)
    assert runs == 4 + 1 + 4, "a regrade adds runs; history is kept"
    assert scores(db) == {
        ("alice", "01_mini"): 2.0,
        ("alice", "02_mini"): 2.0,
        ("bob", "01_mini"): 2.0,
        ("carol", "homework"): 0.0,
    }


def test_a_zip_and_a_hostile_submission_in_the_batch(mini_course: Config, tmp_path: Path) -> None:
    folder = make_class(tmp_path / "class")
    submission(folder / "mallory", "while True:\n    pass", "01_mini")
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in folder.rglob("*.ipynb"):
            zipped.write(path, path.relative_to(folder).as_posix())
    db = str(tmp_path / "gradebook.db")
    started = time.monotonic()
    with Gradebook(db) as gradebook:
        summary = grade_class(archive, mini_course, gradebook, workers=2)
    assert summary.recorded == 5
    assert time.monotonic() - started < 60, "the endless loop costs its own time limit only"
    graded = scores(db)
    assert graded[("mallory", "01_mini")] == 1.0, "only the looping cell's check is lost"
    assert graded[("alice", "01_mini")] == graded[("bob", "01_mini")] == 2.0


def _stop(process: subprocess.Popen[str], how: str) -> None:
    if how == "ctrl_c":
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        process.terminate()  # what a cancelled CI job or `kill` does


@pytest.mark.parametrize("how", ["ctrl_c", "sigterm"])
def test_stopping_loses_no_finished_result(mini_course: Config, tmp_path: Path, how: str) -> None:
    folder, db = tmp_path / "class", str(tmp_path / "gradebook.db")
    for student in range(8):
        submission(folder / f"s{student}", f"import time\ntime.sleep(1)\n{RIGHT}", "01_mini")
    command = [
        sys.executable, "-m", "grader.cli", "--course", str(mini_course.root),
        "grade", str(folder), "--db", db, "--workers", "1",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while not Path(db).exists() or len(scores(db)) < 2:
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    _stop(process, how)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "run the same command again to grade the rest" in err
    assert own_run_dirs(process.pid) == set(), "a run or zygote directory was left behind"
    saved = scores(db)
    assert 2 <= len(saved) < 8
    assert set(saved.values()) == {2.0}, "no half-graded notebook was recorded"
    assert main(["--course", str(mini_course.root), "grade", str(folder), "--db", db]) == 0
    final = scores(db)
    assert len(final) == 8 and set(final.values()) == {2.0}
    with Gradebook(db) as gradebook:
        assert gradebook.run_count() == 8, "the second run graded only what was left"


def test_grade_export_feedback_on_the_course(course: Config, tmp_path: Path) -> None:
    folder, db, out = tmp_path / "class", str(tmp_path / "gradebook.db"), tmp_path / "feedback"
    write(solution("03_linear_regression_module"), folder / "ann", "03_linear_regression_module")
    wrong = edit_solution(
        "03_linear_regression_module", "training_loop", "optimizer.zero_grad()", "pass"
    )
    write(wrong, folder / "ben", "03_linear_regression_module")
    root = ["--course", str(course.root)]
    assert main([*root, "grade", str(folder), "--db", db]) == 0
    assert main([*root, "export", "--db", db, "--csv", str(tmp_path / "grades.csv")]) == 0
    assert main([*root, "feedback", "--db", db, "--out", str(out)]) == 0
    totals = [line.split(",")[-2:] for line in (tmp_path / "grades.csv").read_text().splitlines()]
    # no zero_grad: the history is wrong, and in a prescribed loop that costs every check of it;
    # the maximum is the course's, every notebook of it, handed in or not
    maximum = str(sum(notebook_maxima(course).values()))
    assert totals[1:] == [["6.0", maximum], ["3.0", maximum]] and maximum != "6.0"
    page = (out / "ben" / "03_linear_regression_module.html").read_text()
    assert page.count("data:image/png;base64,") == 3, "mse, cost history and fitted line"
    assert "departs from the reference" in page and "optimizer.step()" in page
    assert (out / "index.html").is_file()
