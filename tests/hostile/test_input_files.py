"""Every input file ends as a recorded result, through `grader grade` and `grader check`.

Notebook files that `json` (or the reader after it) rejects in any way, things named `.ipynb`
that are no files, names that are not UTF-8, and archives with odd dates, over-long, clashing,
unsafe and NUL-holding names: each is recorded with its reason, the batch goes on, the good
submission beside them keeps its full score, and no extracted file is left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.config import Config
from grader.gradebook import Gradebook, GradedNotebook
from tests.conftest import mini_solution, submission

pytestmark = pytest.mark.slow

RIGHT = "answer = 21 * scale"
GOOD = nbformat.writes(mini_solution()).encode()


def notebook_json(**changes: object) -> bytes:
    """The right mini notebook as JSON with top-level keys changed."""
    return json.dumps({**json.loads(GOOD), **changes}).encode()


def wrong_source_types() -> bytes:
    data = json.loads(GOOD)
    for cell in data["cells"]:
        if cell["metadata"]["nbgrader"]["grade_id"] == "first":
            cell["source"] = ["answer = ", 42, {"x": None}]
        cell["metadata"]["tags"] = "not a list"
    data["metadata"] = ["not", "a", "dict"]
    return json.dumps(data).encode()


# file contents that cannot be graded -> a fragment of the reason recorded
UNREADABLE = {
    "deep": (b'{"cells": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply"),
    "bigint": (notebook_json(pad=0)[:-1] + b', "n": ' + b"7" * 5000 + b"}", "4300 digits"),
    "nan": (notebook_json(pad=0)[:-1] + b', "n": NaN}', "NaN is not a JSON value"),
    "latin1": ('{"cells": [], "x": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
    "list": (b"[" + GOOD + b"]", "not a notebook (no list of cells)"),
    "cells": (notebook_json(cells={"first": RIGHT}), "no list of cells"),
    "huge": (b'{"cells": [], "pad": "' + b"x" * (21 * 1024 * 1024) + b'"}', "larger than 20 MB"),
}
# file contents that are graded although nbformat would reject them -> the score they get
GRADABLE = {
    "bom": (b"\xef\xbb\xbf" + GOOD, 2.0),
    "no_minor_extra_keys": (notebook_json(nbformat_minor=None, extra={"a": 1}), 2.0),
    "wrong_types": (wrong_source_types(), 1.0),  # `first` holds no text: graded as not done
}


def make_class(root: Path) -> Path:
    submission(root / "alice", RIGHT)
    for name, (content, _) in {**UNREADABLE, **GRADABLE}.items():
        (root / name).mkdir()
        (root / name / "01_mini.ipynb").write_bytes(content)
    (root / "folder" / "01_mini.ipynb").mkdir(parents=True)
    (root / "fifo").mkdir()
    os.mkfifo(root / "fifo" / "01_mini.ipynb")
    jose = os.path.join(os.fsencode(root), b"Jos\xe9")
    os.mkdir(jose)
    Path(os.fsdecode(os.path.join(jose, b"01_mini.ipynb"))).write_bytes(GOOD)
    return root


def latest(db: str) -> dict[str, GradedNotebook]:
    with Gradebook(db) as gradebook:
        return {g.student: g for g in gradebook.latest()}


def test_every_file_of_a_class_folder_is_recorded(
    mini_course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, db = make_class(tmp_path / "class"), str(tmp_path / "gb.db")
    code = main(["--course", str(mini_course.root), "grade", str(folder), "--db", db])
    printed = capsys.readouterr()
    assert code == 1, printed.err  # some files could not be graded at all: each one is listed
    assert "14 notebook(s) found, 14 graded and recorded" in printed.out
    assert "not graded: folder: 01_mini.ipynb: a folder, not a notebook file" in printed.err
    assert "not graded: fifo: 01_mini.ipynb: not a regular file" in printed.err
    book = latest(db)
    assert book["alice"].result.score == 2 and book["Jos\\xe9"].result.score == 2
    assert book["Jos\\xe9"].file == "Jos\\xe9/01_mini.ipynb"
    for name, (_, reason) in UNREADABLE.items():
        result = book[name].result
        assert result.score == 0 and result.max_score == 2, name
        assert reason in result.notices[0] and result.notices[0].startswith("01_mini.ipynb"), name
    for name, (_, score) in GRADABLE.items():
        assert book[name].result.score == score, (name, book[name].result.checks)
    assert any(
        "`first` in your notebook is not text" in n for n in book["wrong_types"].result.notices
    )


def odd_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("alice/01_mini.ipynb", GOOD)
        zipped.writestr(zipfile.ZipInfo("bob/01_mini.ipynb", (1980, 0, 0, 25, 61, 0)), GOOD)
        zipped.writestr(zipfile.ZipInfo("carol/01_mini.ipynb", (2107, 15, 31, 31, 63, 62)), GOOD)
        zipped.writestr("d" * 300 + "/" + "e" * 300 + "/" + "f" * 4000 + "/01_mini.ipynb", GOOD)
        zipped.writestr("Erin/01_mini.ipynb", GOOD)
        zipped.writestr("erin/01_mini.ipynb", GOOD)  # one name but for case
        zipped.writestr("frank/01_mini.ipynb#", GOOD)  # a NUL, patched in below
        zipped.writestr("grace/01_mini.ipynb/", b"")  # a folder named like a notebook
        zipped.writestr("grace/01_mini.ipynb/02_mini.ipynb", GOOD)
        zipped.writestr("../heidi/01_mini.ipynb", GOOD)
    path.write_bytes(path.read_bytes().replace(b"01_mini.ipynb#", b"01_mini.ipynb\x00"))
    return path


def test_every_entry_of_an_odd_archive_is_recorded(
    mini_course: Config,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    archive, db = odd_archive(tmp_path / "class.zip"), str(tmp_path / "gb.db")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where it extracts
    code = main(["--course", str(mini_course.root), "grade", str(archive), "--db", db])
    printed = capsys.readouterr()
    assert code == 1 and "10 notebook(s) found, 10 graded and recorded" in printed.out
    assert os.listdir(tmp_path / "tmp") == [], "the extracted notebooks were removed"
    with Gradebook(db) as gradebook:
        rows = {(g.student, g.result.notebook): g for g in gradebook.latest()}
    scores = {key: item.result.score for key, item in rows.items() if not item.result.error}
    long = next(key for key in scores if key[0].startswith("ddd"))
    assert scores == {
        ("alice", "01_mini"): 2, ("bob", "01_mini"): 2, ("carol", "01_mini"): 2,
        long: 2, ("grace", "02_mini"): 2,
    }  # fmt: skip
    errors = {key[0]: item.result.error for key, item in rows.items() if item.result.error}
    assert "entries with this name" in errors["Erin"] and "entries with this name" in errors["erin"]
    assert "NUL character" in errors["frank"]
    assert "a folder in the archive" in errors["grace"]
    assert "absolute or has `..`" in errors[".."]
    assert rows[("bob", "01_mini")].submitted_at == rows[("carol", "01_mini")].submitted_at
