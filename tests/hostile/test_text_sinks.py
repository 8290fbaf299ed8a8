"""Student text reaches every sink clean: the terminal, the gradebook (SQLite), CSV, JUnit XML,
results.json and the feedback pages, through `grader grade`, `export`, `feedback` and `check`.

The text comes from cell errors (raised, or forged on the kernel's own channel with characters
no UTF-8 message can carry), from folder names (escape sequences, bytes that are not UTF-8) and
from the code of TO DO cells.
"""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader.cli import main
from grader.config import Config
from grader.gradebook import Gradebook, GradedNotebook
from grader.untrusted import MAX_MESSAGE_CHARS
from tests.conftest import submission

pytestmark = pytest.mark.slow

RIGHT = "answer = 21 * scale"
# The kernel holds its connection key: a cell can send any message on its channels, here an
# error whose name and text hold a lone surrogate and a NUL (JSON escapes carry them).
FORGED_ERROR = """
import json
kernel = get_ipython().kernel
packer, kernel.session.pack = kernel.session.pack, (
    lambda obj: json.dumps(obj, ensure_ascii=True, default=str).encode()
)
try:
    kernel.session.send(
        kernel.iopub_socket, "error",
        {"ename": "Bad\\ud800Name\\x00", "evalue": "\\udfff\\x1b]0;owned\\x07", "traceback": []},
        parent=kernel.get_parent("shell"), ident=kernel._topic("error"),
    )
finally:
    kernel.session.pack = packer
"""
RAW_ERROR = (
    "raise ValueError('\\x1b[2J\\x1b]0;owned\\x07\\u202e\\x9b31m\\x00\\x0b\\ufffe'"
    " + '\\n  [PASS] first::answer   1/1\\nTOTAL 2/2 points in 1 notebook(s)')"
)
LONG_ERROR = "raise ValueError('y' * 20_000)"
ESCAPES_IN_CODE = RIGHT + "  # \x1b[2J\u202e"
MALLORY = "mallory\x1b[31m\u202e"


def make_class(root: Path) -> Path:
    submission(root / "alice", RIGHT)
    submission(root / "alice", RIGHT, "02_mini")
    submission(root / MALLORY, FORGED_ERROR)
    submission(root / "trudy", RAW_ERROR)
    submission(root / "trudy", LONG_ERROR, "02_mini")
    jose = Path(os.fsdecode(os.path.join(os.fsencode(root), b"Jos\xe9")))  # as unzip writes it
    submission(jose, ESCAPES_IN_CODE)
    return root


def unsafe(text: str) -> list[str]:
    """The characters of `text` that no sink should ever get."""
    return [char for char in text if not (char.isprintable() or char in "\n\t")]


def graded(db: str) -> dict[tuple[str, str], GradedNotebook]:
    with Gradebook(db) as gradebook:
        return {(g.student, g.result.notebook): g for g in gradebook.latest()}


def first_message(item: GradedNotebook) -> str:
    return next(check.message for check in item.result.checks if check.grade_id == "first")


def test_student_text_reaches_every_sink_clean(
    mini_course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, db, out = make_class(tmp_path / "class"), str(tmp_path / "gb.db"), tmp_path / "out"
    out.mkdir()
    course = ["--course", str(mini_course.root)]
    assert main([*course, "grade", str(folder), "--db", db]) == 0
    exports = ["--csv", str(out / "grades.csv"), "--junit", str(out / "class.xml")]
    exports += ["--results-dir", str(out / "results")]
    assert main([*course, "export", "--db", db, *exports]) == 0
    assert main([*course, "feedback", "--db", db, "--out", str(out / "feedback")]) == 0
    printed = capsys.readouterr()
    assert "6 notebook(s) found, 6 graded and recorded" in printed.out
    assert unsafe(printed.out + printed.err) == []

    book = graded(db)
    assert {key: item.result.score for key, item in book.items()} == {
        ("alice", "01_mini"): 2, ("alice", "02_mini"): 2, ("mallory\\x1b[31m\\u202e", "01_mini"): 1,
        ("trudy", "01_mini"): 1, ("trudy", "02_mini"): 1, ("Jos\\xe9", "01_mini"): 2,
    }  # fmt: skip
    forged = first_message(book[("mallory\\x1b[31m\\u202e", "01_mini")])
    assert forged == "cell `first` raised Bad\\ud800Name\\x00: \\udfff\\x1b]0;owned\\x07"
    raised = first_message(book[("trudy", "01_mini")])
    assert raised.startswith("cell `first` raised ValueError: \\x1b[2J\\x1b]0;owned\\x07\\u202e")
    long = first_message(book[("trudy", "02_mini")])
    assert len(long) <= MAX_MESSAGE_CHARS and long.endswith("characters in all]")
    (answer,) = [a for a in book[("Jos\\xe9", "01_mini")].result.answers if a.grade_id == "first"]
    assert "# \\x1b[2J\\u202e" in answer.source
    for item in book.values():
        texts = [
            item.student,
            item.file,
            *item.result.notices,
            *(a.source for a in item.result.answers),
        ]
        texts += [check.message for check in item.result.checks]  # fmt: skip
        assert unsafe("".join(texts)) == []

    junit = (out / "class.xml").read_text(encoding="utf-8")
    assert len(ET.fromstring(junit).findall(".//testsuite")) == 6 and unsafe(junit) == []
    rows = list(csv.DictReader((out / "grades.csv").read_text(encoding="utf-8").splitlines()))
    assert {row["student"] for row in rows} >= {"mallory\\x1b[31m\\u202e", "Jos\\xe9"}
    for results in (out / "results").glob("*/results.json"):
        assert unsafe(json.dumps(json.loads(results.read_text()), ensure_ascii=False)) == []
    pages = list((out / "feedback").rglob("*.html"))
    student_pages = [page for page in pages if not page.name.startswith("sorted-by-")]
    assert len(student_pages) == 7 and all(unsafe(page.read_text()) == [] for page in pages)


def test_check_prints_no_forged_line_and_writes_readable_files(
    mini_course: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = submission(tmp_path / "trudy", RAW_ERROR)
    forged = submission(tmp_path / "mallory", FORGED_ERROR, "02_mini")
    json_path, junit_path = tmp_path / "results.json", tmp_path / "junit.xml"
    code = main(["--course", str(mini_course.root), "check", str(path), str(forged),
                 "--json", str(json_path), "--junit", str(junit_path)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 1 and unsafe(printed.out + printed.err) == []
    lines = printed.out.splitlines()
    assert not any(line.startswith(("  [PASS] first", "TOTAL 2/2")) for line in lines), lines
    assert "[FAIL] first::answer" in printed.out and "TOTAL 2/4 points" in printed.out
    data = json.loads(json_path.read_text())
    outputs = [test["output"] for test in data["tests"]]
    assert data["score"] == 2 and any("Bad\\ud800Name" in output for output in outputs)
    root = ET.fromstring(junit_path.read_text(encoding="utf-8"))
    assert [f.get("message", "")[:20] for f in root.iter("failure")] == [
        "cell `first` raised ", "cell `first` raised ",
    ]  # fmt: skip
