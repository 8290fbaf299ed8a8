from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from grader.cli import main
from grader.results import NotebookResult
from grader.submissions import Submission
from tests.conftest import ROOT, make_cell, make_notebook, write


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--course", str(ROOT), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_unknown_notebook_is_a_grader_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(make_notebook([make_cell("x = 1", "a")]), tmp_path, "homework")
    code, out, err = run(capsys, "check", str(path))
    assert code == 2 and "ERROR: " in out
    assert "no exercise is called 'homework'" in err and "02_linear_regression_numpy" in err
    assert "Traceback" not in err
    assert f"  graded homework ({path}): error  [1 done]\n" in err  # progress without a terminal


def test_missing_path_is_a_grader_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path / "nope.ipynb"))
    assert code == 2 and "no such file or folder" in err


def test_empty_folder_is_a_grader_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and "has no .ipynb notebooks" in err


def test_bad_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check", "--device", "tpu")
    assert code == 2 and "invalid choice" in err


def test_assign_check_reports_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "assign", "--check")
    assert code == 0 and "up to date" in out


def test_grade_of_a_missing_folder_is_a_grader_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "grade", str(tmp_path / "nope"), "--db", str(tmp_path / "g.db"))
    assert code == 2 and "no such folder or archive" in err


def test_grade_into_a_foreign_database_is_a_grader_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "notes.db").write_text("not a database\n" * 100)
    code, _, err = run(capsys, "grade", str(tmp_path), "--db", str(tmp_path / "notes.db"))
    assert code == 2 and "cannot open the gradebook" in err and "Traceback" not in err


def test_grade_records_unknown_notebooks_without_starting_kernels(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write(make_notebook([make_cell("x = 1", "a")]), tmp_path / "class" / "ann", "homework")
    db = str(tmp_path / "g.db")
    code, out, err = run(capsys, "grade", str(tmp_path / "class"), "--db", db)
    assert code == 1 and "1 notebook(s) found, 1 graded and recorded" in out
    assert "not graded: ann: " in err and "no exercise is called 'homework'" in err
    code, out, _ = run(capsys, "grade", str(tmp_path / "class"), "--db", db)
    assert code == 0 and "0 graded and recorded, 1 already graded" in out


def _broken_command(args: object, config: object) -> int:
    raise RuntimeError("boom\x1b[2J\nsecond line")


def test_internal_error_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("grader.cli._check", _broken_command)
    code, _, err = run(capsys, "check")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("grader: internal error: RuntimeError: boom")
    assert "\x1b" not in err and "Traceback" not in err
    log = Path(err.split("traceback in ", 1)[1].split(";", 1)[0])
    assert "RuntimeError: boom" in log.read_text()
    log.unlink()


def test_internal_error_traceback_behind_a_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("grader.cli._check", _broken_command)
    code = main(["--course", str(ROOT), "--traceback", "check"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and "grader: internal error: RuntimeError" in err


def test_grade_without_a_terminal_writes_a_plain_line_per_notebook(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for student in ("ann", "bob\x1b[2J\rforged"):
        write(make_notebook([make_cell("x = 1", "a")]), tmp_path / "class" / student, "homework")
    code, _, err = run(capsys, "grade", str(tmp_path / "class"), "--db", str(tmp_path / "g.db"))
    lines = [line for line in err.splitlines() if line.startswith("grader: ")]
    assert lines[0] == "grader: warming up: the kernel zygote is importing torch"
    assert "grader: 2 notebook(s) to grade" in lines
    graded = [line for line in lines if line.startswith("grader: [")]
    assert len(graded) == 2 and graded[0].startswith("grader: [1/2] ann/homework: not graded (")
    assert graded[1].startswith("grader: [2/2] bob\\x1b[2J\\x0dforged/homework: not graded")
    assert "\x1b" not in err and "\r" not in err and "\x1b" not in "".join(lines)
    assert code == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_bar_says_what_warms_up_and_its_clock_runs_before_the_first_result() -> None:
    from grader.cli import _progress_display

    terminal = Terminal()
    submission = Submission(
        "ann\x1b[31m", "homework", Path("x"), "x", "0" * 64, datetime(2026, 1, 1)
    )
    with _progress_display(terminal) as progress:
        progress.stage("warming up: the kernel zygote is importing torch")
        time.sleep(1.2)  # the bar is redrawn while nothing is graded yet
        warming = terminal.getvalue()
        progress.start(2)
        progress.advance(submission, NotebookResult("homework", "x", (), error="bad"))
    shown = terminal.getvalue()
    assert "warming up: the kernel zygote is importing torch" in warming
    assert "00:01" in warming  # its clock ran during the warm-up
    assert "1/2" in shown and "ann\\x1b[31m/homework: not graded" in shown
    assert "\x1b[31m" not in shown


@pytest.mark.slow
def test_a_kernel_that_cannot_start_is_a_grader_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    course = tmp_path / "course"
    shutil.copytree(ROOT / "solutions", course / "solutions")
    shutil.copytree(ROOT / "exercises", course / "exercises")
    shutil.copytree(ROOT / "checks", course / "checks")
    (course / "pyproject.toml").write_text("[tool.grader]\nmemory_limit_mb = 150\n")
    notebook = course / "exercises" / "01_autograd_basics.ipynb"
    code = main(["--course", str(course), "check", str(notebook)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "a kernel died as it started" in err and "memory_limit_mb" in err


HEAVY_MODULES = ("pytest", "numpy", "torch", "nbformat", "nbclient")
# Records a graded notebook, then runs each light command in one fresh interpreter and prints
# which heavy modules each has loaded so far (the gradebook API the script uses counts too).
LIGHT_COMMANDS = """
import json, sys
from datetime import datetime
from pathlib import Path
from grader.cli import main
from grader.gradebook import Gradebook
from grader.results import PASSED, CheckResult, NotebookResult
from grader.submissions import Submission

heavy, work = json.loads(sys.argv[1]), Path(sys.argv[2])
def loaded():
    return sorted(name for name in heavy if name in sys.modules)
seen = {"imports": loaded()}
db = str(work / "g.db")
check = CheckResult("01_a", "cell", "check", 1.0, 1.0, PASSED)
submission = Submission("ann", "01_a", Path("ann/01_a.ipynb"), "ann/01_a.ipynb", "0" * 64,
                        datetime(2026, 11, 20))
with Gradebook(db) as gradebook:
    gradebook.record(submission, NotebookResult("01_a", submission.file, (check,)), "1", "v")
(work / "roster.csv").write_text("id,name,email,section\\nann,Ann,ann@example.org,A\\n")
commands = {
    "--help": ["--help"],
    "roster": ["roster", "import", str(work / "roster.csv"), "--db", db],
    "export": ["export", "--db", db, "--csv", str(work / "g.csv"), "--junit", str(work / "g.xml"),
               "--results-dir", str(work / "results")],
    "feedback": ["feedback", "--db", db, "--out", str(work / "pages")],
}
for name, argv in commands.items():
    main(argv)
    seen[name] = loaded()
print(json.dumps(seen))
"""


def test_light_commands_import_no_pytest_numpy_torch_or_nbclient(tmp_path: Path) -> None:
    """`--help`, `roster`, `export` and `feedback` do not pay for the grading pipeline's imports
    (about 0.4 s each): a constant they need lives in a light module, the rest is imported late."""
    completed = subprocess.run(
        [sys.executable, "-c", LIGHT_COMMANDS, json.dumps(HEAVY_MODULES), str(tmp_path)],
        capture_output=True, text=True, check=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    seen = json.loads(completed.stdout.splitlines()[-1])
    assert (tmp_path / "g.csv").exists() and (tmp_path / "pages" / "index.html").exists()
    assert {name: seen[name] for name in ("imports", "--help", "roster", "export")} == {
        "imports": [], "--help": [], "roster": [], "export": [],
    }  # fmt: skip
    # The class page's charts are drawn with matplotlib, which needs numpy: nothing else.
    assert seen["feedback"] == ["numpy"]


@pytest.mark.parametrize(
    "command",
    [
        ["export", "--csv", "OUT/grades.csv"],
        ["feedback", "--out", "OUT/pages"],
        ["history"],
        ["override", "4711", "01_autograd_basics", "--score", "1", "--reason", "typo"],
        ["excuse", "4711", "01_autograd_basics", "--reason", "ill"],
    ],
)
def test_a_mistyped_gradebook_is_refused_not_made_empty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "gradbook.db"
    argv = [part.replace("OUT", str(tmp_path)) for part in command]
    code, _, err = run(capsys, *argv, "--db", str(missing))
    assert code == 2 and f"{missing}: no gradebook here" in err and "Traceback" not in err
    assert not missing.exists() and sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--cell-timeout", "--notebook-timeout"])
@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_limit_of_zero_or_less_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, option: str, value: str
) -> None:
    path = write(make_notebook([make_cell("x = 1", "a")]), tmp_path, "01_autograd_basics")
    code, _, err = run(capsys, "check", str(path), option, value)
    assert code == 2 and "must be more than 0" in err and "Traceback" not in err
