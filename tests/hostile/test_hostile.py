"""Hostile submissions: each is graded to completion with a specific message, costs only the
checks it breaks, leaves other results intact and leaves nothing behind (see conftest)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nbformat
import pytest

from grader.cli import main
from grader.config import Config
from grader.engine.isolation import detect_isolation
from tests.conftest import mini_solution, submission, write
from tests.hostile.conftest import grade, messages

pytestmark = pytest.mark.slow

HOSTILE_FIRST_CELLS = {
    "endless_loop": ("while True:\n    pass", "did not finish within 4 s"),
    "sleep_forever": ("import time\ntime.sleep(10**6)", "did not finish within 4 s"),
    "ignores_interrupts": (
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
        "did not finish within 4 s",
    ),
    "waits_for_input": ("answer = input('your answer? ')", "raised StdinNotImplementedError"),
    "bytearray_bomb": ("blob = bytearray(16 * 1024**3)", "raised MemoryError"),
    "growing_bomb": (
        "blobs = []\nwhile True:\n    blobs.append(bytearray(10**8))",
        "raised MemoryError",
    ),
    "tensor_bomb": ("import torch\nblob = torch.ones(4 * 1024**3)", "can't allocate memory"),
    "numpy_bomb": ("import numpy\nblob = numpy.ones(4 * 1024**3)", "MemoryError"),
    "sys_exit": ("import sys\nsys.exit(3)", "raised SystemExit"),
    "raise_system_exit": ("raise SystemExit", "raised SystemExit"),
    "raise_keyboard_interrupt": ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
    "os_exit": ("import os\nos._exit(1)", "crashed the kernel"),
    "segfault": ("import ctypes\nctypes.string_at(0)", "crashed the kernel"),
    "monkeypatching": (
        "import builtins, numpy, pytest\n"
        "numpy.allclose = lambda *a, **k: True\n"
        "numpy.testing.assert_allclose = lambda *a, **k: None\n"
        "pytest.approx = lambda *a, **k: 0\n"
        "builtins.round = lambda *a, **k: 0\n"
        "import torch\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.testing.assert_close = lambda *a, **k: None\n"
        "try:\n"
        "    import grader.expect\n"
        "    grader.expect.assert_close = lambda *a, **k: None\n"
        "except ImportError:\n"
        "    pass\n"
        "answer = 0",
        "wrong answer",
    ),
    "forged_output": (
        "print('[PASS] first::answer 1/1')\nprint('TOTAL 2/2 points in 1 notebook(s)')\n"
        "from IPython.display import display\n"
        "display({'application/vnd.grader.payload.v1': "
        '\'{"__dict__": {"answer": {"__dict__": {"value": 42.0}}}}\'}, raw=True)\n'
        "open('results.json', 'w').write('{\"score\": 100}')\n"
        "answer = 0",
        "wrong answer",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FIRST_CELLS))
def test_hostile_cell_costs_only_its_own_check(
    mini_course: Config, tmp_path: Path, case: str
) -> None:
    source, expected = HOSTILE_FIRST_CELLS[case]
    hostile = submission(tmp_path / "a", source)
    clean = submission(tmp_path / "b", "answer = 21 * scale", name="02_mini")
    first, second = grade(mini_course, hostile, clean)
    assert set(messages(first)) == {"first"}, messages(first)
    assert expected in messages(first)["first"]
    assert second.score == second.max_score == 2


def test_filling_the_disk_is_stopped_by_a_limit(mini_course: Config, tmp_path: Path) -> None:
    # 5 GB into the private directory: it lives in memory charged to the run's cgroup, so the
    # memory limit stops it (or, on a slow machine, the cell's time limit comes first).
    source = (
        "for i in range(100):\n    with open(f'junk{i}', 'wb') as junk:\n"
        "        junk.write(b'x' * 50_000_000)"
    )
    hostile = submission(tmp_path / "a", source)
    clean = submission(tmp_path / "b", "answer = 21 * scale", name="02_mini")
    first, second = grade(mini_course, hostile, clean)
    assert set(messages(first)) == {"first"}
    stopped = ("used more memory than allowed", "did not finish within 4 s")
    assert any(reason in messages(first)["first"] for reason in stopped), messages(first)
    assert second.score == second.max_score


BACKGROUND_WORK = {
    "child_process": "import subprocess\nsubprocess.Popen(['sleep', '1000'])",
    "daemonized_process": (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    os.execvp('sleep', ['sleep', '1000'])"
    ),
    "thread": "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,)).start()",
}


@pytest.mark.parametrize("case", sorted(BACKGROUND_WORK))
def test_background_work_does_not_outlive_the_run(
    mini_course: Config, tmp_path: Path, case: str
) -> None:
    path = submission(tmp_path, BACKGROUND_WORK[case] + "\nanswer = 21 * scale")
    (result,) = grade(mini_course, path)
    assert result.score == result.max_score  # and nothing is left: see the autouse fixture


def test_fork_bomb_is_stopped_by_the_process_limit(mini_course: Config, tmp_path: Path) -> None:
    if not Path("/sys/fs/cgroup/pids").is_dir():
        pytest.skip("no cgroup pids controller here: the process limit cannot be enforced")
    source = (
        "import os, time\nchildren = 0\nfor _ in range(500):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(1000)\n"
        "        os._exit(0)\n    children += 1\nanswer = 21 * scale if children < 100 else 0"
    )
    (result,) = grade(mini_course, submission(tmp_path, source))
    assert result.score == result.max_score, messages(result)


@pytest.mark.parametrize(
    "printing",
    ["for i in range(200_000):\n    print('x' * 100)", "print('x' * 150_000_000)"],
    ids=["many_lines", "one_150MB_line"],
)
def test_huge_output_is_truncated_and_the_work_still_counts(
    mini_course: Config, tmp_path: Path, printing: str
) -> None:
    patient = dataclasses.replace(mini_course, cell_timeout=30)  # printing is slow under load
    (result,) = grade(patient, submission(tmp_path, f"{printing}\nanswer = 21 * scale"))
    assert result.score == result.max_score, messages(result)


@pytest.mark.skipif(not detect_isolation().sandboxed, reason="bubblewrap does not run here")
def test_course_files_and_other_submissions_are_invisible(
    mini_course: Config, tmp_path: Path
) -> None:
    other = submission(tmp_path / "other", "answer = 21 * scale", name="02_mini")
    for target in (
        mini_course.root / "solutions" / "01_mini.ipynb",
        mini_course.root / "checks",
        other,
    ):
        source = f"import os\nanswer = os.listdir({str(target.parent)!r})"
        (result,) = grade(mini_course, submission(tmp_path / "me", source))
        assert "FileNotFoundError" in messages(result)["first"], messages(result)


def test_forged_files_do_not_touch_the_results(mini_course: Config, tmp_path: Path, capsys) -> None:
    results_json = tmp_path / "results.json"
    source = (
        f"open({str(results_json)!r}, 'w').write('{{\"score\": 100}}')\n"
        "open('results.json', 'w').write('forged')\nanswer = 21 * scale"
    )
    path = submission(tmp_path / "sub", source)
    code = main(
        ["--course", str(mini_course.root), "check", str(path), "--json", str(results_json)]
    )
    data = json.loads(results_json.read_text())
    if detect_isolation().sandboxed:  # the grader's output folder does not exist in the sandbox
        assert (code, data["score"], data["max_score"]) == (1, 1, 2)
        assert "FileNotFoundError" in data["tests"][0]["output"]
    else:  # the file is written, then overwritten by the grader's own results
        assert (code, data["score"], data["max_score"]) == (0, 2, 2)
    assert "score 1/2" in capsys.readouterr().out or not detect_isolation().sandboxed


def test_restructured_notebooks_are_graded_by_grade_id(mini_course: Config, tmp_path: Path) -> None:
    nb = mini_solution(first="answer = 21 * scale")
    nb.cells.reverse()  # reordered
    fake = nbformat.v4.new_code_cell("answer = 1000")
    fake.metadata["nbgrader"] = dict(nb.cells[0].metadata["nbgrader"], grade_id="first")
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os"))  # extra, untagged
    between = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "between"
    )
    between.metadata["nbgrader"].update(solution=True, locked=False)  # retagged as a TO DO cell
    between.source = "answer = 1000"
    nb.cells.append(fake)  # a second cell claiming `first`'s grade id
    (result,) = grade(mini_course, write(nb, tmp_path, "01_mini"))
    assert result.score == result.max_score
    assert "your edits to the locked cell `between` were ignored" in result.notices
    assert "cell `first` appears 2 times; the first one was used" in result.notices


def test_deleted_todo_cell_costs_only_its_checks(mini_course: Config, tmp_path: Path) -> None:
    nb = mini_solution()
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] != "first"]
    (result,) = grade(mini_course, write(nb, tmp_path, "01_mini"))
    assert set(messages(result)) == {"first"} and result.score == 1


NOT_NOTEBOOKS = {
    "empty": (b"", "not valid JSON"),
    "truncated": (b'{"cells": [{"cell_type": "code", "sou', "not valid JSON"),
    "binary": (bytes(range(256)) * 4, "not UTF-8"),
    "latin1": ('{"cells": [], "note": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
    "nbformat3": (
        b'{"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "cells": []}',
        "nbformat 3",
    ),
    "huge": (b'{"cells": [], "pad": "' + b"x" * (100 * 1024 * 1024) + b'"}', "larger than"),
}


@pytest.mark.parametrize("case", sorted(NOT_NOTEBOOKS))
def test_files_that_are_not_notebooks_get_zero_and_a_reason(
    mini_course: Config, tmp_path: Path, case: str
) -> None:
    content, reason = NOT_NOTEBOOKS[case]
    path = tmp_path / "01_mini.ipynb"
    path.write_bytes(content)
    clean = submission(tmp_path / "b", "answer = 21 * scale", name="02_mini")
    broken, good = grade(mini_course, path, clean)
    assert broken.score == 0 and reason in broken.notices[0]
    assert good.score == good.max_score


def test_ten_thousand_cells(mini_course: Config, tmp_path: Path) -> None:
    nb = mini_solution()
    nb.cells.extend(nbformat.v4.new_code_cell(f"x{i} = {i}") for i in range(10_000))
    (result,) = grade(mini_course, write(nb, tmp_path, "01_mini"))
    assert result.score == result.max_score
    assert any("10000 cell(s)" in notice for notice in result.notices)


def test_wrong_file_name_is_reported_and_the_batch_goes_on(
    mini_course: Config, tmp_path: Path, capsys
) -> None:
    wrong = submission(tmp_path / "a", "answer = 21 * scale", name="homework1")
    good = submission(tmp_path / "b", "answer = 21 * scale")
    code = main(["--course", str(mini_course.root), "check", str(wrong), str(good)])
    out, err = capsys.readouterr()
    assert code == 2 and "no exercise is called 'homework1'" in err
    assert "score 2/2" in out
