"""check() in a notebook, on files a student can make: a saved file that is JSON but no
notebook's shape, or nested too deep for the parser, and a notebook named like an option."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.notebook_check import run_check, unsaved_warning


@pytest.mark.parametrize(
    "text", ['{"cells": 5}', '{"cells": [[1]]}', "[1]", "[" * 100_000 + "]" * 100_000, "\xff"]
)
def test_a_saved_file_of_any_shape_is_no_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "01_autograd_basics.ipynb"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    warning = unsaved_warning(path, ["x = 1"])  # none, or: the saved file lacks the code run
    assert warning == "" or warning.startswith("the notebook has changes that are not saved")


def test_a_notebook_named_like_an_option_is_checked_as_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "--help.ipynb").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRADER_COURSE", raising=False)
    said = run_check(Path("--help.ipynb"))
    assert said.startswith("grader: error: no course folder"), said
