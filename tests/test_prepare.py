from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

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


NOT_QUITE_JSON = {
    "deep_nesting": (b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    "huge_integer": (b'{"nbformat": 4, "cells": [], "n": ' + b"9" * 5000 + b"}", "4300 digits"),
    "nan": (b'{"nbformat": 4, "cells": [], "n": NaN}', "NaN is not a JSON value"),
    "infinity": (b'{"nbformat": 4, "cells": [], "n": -Infinity}', "Infinity is not a JSON"),
    "cells_not_a_list": (b'{"nbformat": 4, "cells": {"a": 1}}', "no list of cells"),
    "string": (b'"a notebook"', "no list of cells"),
    "nbformat_as_text": (b'{"nbformat": "4", "cells": []}', "does not say which nbformat"),
    "nbformat_huge": (b'{"nbformat": [' + b"1," * 10_000 + b'1], "cells": []}', "which nbformat"),
}


@pytest.mark.parametrize("case", sorted(NOT_QUITE_JSON))
def test_json_the_reader_cannot_use_gets_a_reason(tmp_path: Path, case: str) -> None:
    content, reason = NOT_QUITE_JSON[case]
    path = tmp_path / "nb.ipynb"
    path.write_bytes(content)
    nb, problem = read_submission(path)
    assert nb is None and reason in problem and len(problem) < 200, problem


def test_what_is_not_a_regular_file_gets_a_reason(tmp_path: Path) -> None:
    (tmp_path / "folder.ipynb").mkdir()
    os.mkfifo(tmp_path / "fifo.ipynb")  # reading it would block forever
    for name in ("folder.ipynb", "fifo.ipynb"):
        assert read_submission(tmp_path / name) == (None, "it is not a regular file")


def test_a_byte_order_mark_is_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + nbformat.writes(exercise()).encode())
    nb, problem = read_submission(path)
    assert nb is not None and problem == ""


def test_cells_of_the_wrong_shapes_cost_only_themselves() -> None:
    submission = exercise()
    raw = nbformat.from_dict(
        {
            "cells": [
                "not a cell",
                {"cell_type": ["code"], "metadata": []},
                {"metadata": {"nbgrader": "task"}, "source": 1},
                {**dict(submission.cells[2]), "source": ["answer = ", 42, {"x": 1}]},
            ]
        }
    )
    merged = merge_cells(exercise(), raw)
    assert merged.notebook.cells[2].source == "raise NotImplementedError"
    assert any("`task` in your notebook is not text" in notice for notice in merged.notices)
    assert any("3 cell(s) that are not part of the exercise" in n for n in merged.notices)


def test_only_what_grading_uses_is_kept_of_a_submission(tmp_path: Path) -> None:
    submission = exercise()
    submission.metadata["deep"] = json.loads("[" * 900 + "]" * 900)
    submission.cells[2].source = "answer = '\ud800'"
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(submission), encoding="utf-8")
    nb, problem = read_submission(path)
    assert nb is not None and "metadata" not in nb and problem == ""
    merged = merge_cells(exercise(), nb)
    assert merged.notebook.cells[2].source == "answer = '\ufffd'", "sendable to the kernel"
