from __future__ import annotations

from pathlib import Path

import pytest

from grader.cli import main
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
