from __future__ import annotations

from pathlib import Path

import nbformat

from grader.prepare import merge_cells, prepare_submission, read_submission, with_parameters
from tests.conftest import make_cell, make_notebook


def exercise() -> nbformat.NotebookNode:
    return make_notebook(
        [
            make_cell("import torch", "imports"),
            make_cell("seed = 0\ndevice = 'cpu'", "parameters", tags=["parameters"]),
            make_cell("raise NotImplementedError", "task", todo=True),
            make_cell("print(answer)", "show"),
        ]
    )


def test_only_todo_cells_come_from_the_submission() -> None:
    submission = exercise()
    submission.cells[0].source = "import os; os.system('rm -rf /')"
    submission.cells[2].source = "answer = 42"
    merged = merge_cells(exercise(), submission)
    sources = [cell.source for cell in merged.notebook.cells]
    assert sources[0] == "import torch" and sources[2] == "answer = 42"
    assert merged.notices == ("your edits to the locked cell `imports` were ignored",)


def test_missing_duplicated_and_foreign_cells_are_reported() -> None:
    submission = exercise()
    task = submission.cells.pop(2)
    submission.cells.append(nbformat.v4.new_code_cell("scratch = 1"))
    merged = merge_cells(exercise(), submission)
    assert "TO DO cell `task` is missing from your notebook; graded as not done" in merged.notices
    assert any(
        "1 cell(s) that are not part of the exercise were ignored" in n for n in merged.notices
    )
    submission.cells.extend([task, task])
    merged = merge_cells(exercise(), submission)
    assert "cell `task` appears 2 times; the first one was used" in merged.notices


def test_a_todo_cell_turned_into_markdown_counts_as_missing() -> None:
    submission = exercise()
    submission.cells[2].cell_type = "markdown"
    merged = merge_cells(exercise(), submission)
    assert any("missing" in notice for notice in merged.notices)


def test_unreadable_files_get_a_specific_reason(tmp_path: Path) -> None:
    cases = {
        "empty": (b"", "not valid JSON"),
        "truncated": (b'{"cells": [', "not valid JSON"),
        "binary": (b"\xff\xfe\x00\x01", "not UTF-8"),
        "list": (b"[1, 2]", "not a notebook"),
        "v3": (b'{"cells": [], "nbformat": 3}', "nbformat 3 notebooks are not supported"),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / f"{name}.ipynb"
        path.write_bytes(content)
        nb, problem = read_submission(path)
        assert nb is None and reason in problem, (name, problem)
        prepared = prepare_submission(path, exercise())
        assert prepared.unreadable and reason in prepared.notices[0]


def test_parameters_cell_is_replaced() -> None:
    nb = with_parameters(exercise(), {"seed": 7, "device": "cuda", "w": [1.0, 2.0]})
    assert nb.cells[1].source == "seed = 7\ndevice = 'cuda'\nw = [1.0, 2.0]"
