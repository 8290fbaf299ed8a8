"""Hostile submissions, graded in the miniature course of tests/conftest.py.

A hostile cell placed in `first` must cost exactly the `first` check and leave the `second`
check, the other notebook of the batch, the machine and the file system untouched.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.config import Config
from grader.grading import check_notebooks
from grader.results import NotebookResult
from tests.conftest import own_run_dirs


def grade(course: Config, *paths: Path) -> list[NotebookResult]:
    return check_notebooks(list(paths), course)


def messages(result: NotebookResult) -> dict[str, str]:
    return {check.grade_id: check.message for check in result.checks if not check.passed}


PR_SET_CHILD_SUBREAPER = 36


def _adopt_orphans() -> None:
    """Make this test process the subreaper of everything it starts: a kernel process that
    daemonises (double fork, setsid) is then re-parented here, not to init, so that the leak
    check below still finds it among this process's descendants."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_adopt_orphans()


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def _descends_from_us(pid: int) -> bool:
    own, seen = os.getpid(), set()
    while pid > 1 and pid not in seen:
        if pid == own:
            return True
        seen.add(pid)
        pid = _parent(pid)
    return False


def _kernel_processes() -> dict[int, str]:
    """Kernel-side processes this test process started (other graders may run beside it)."""
    pattern = "ipykernel_launcher|grader-jail|grader.engine.zygote_loop|sleep 1000"
    out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
    lines = [line.split(" ", 1) for line in out.stdout.splitlines()]
    return {int(pid): command[:120] for pid, command in lines if _descends_from_us(int(pid))}


def _new_processes(before: dict[int, str], grace: float = 3.0) -> dict[int, str]:
    """Processes that appeared since `before` and are still there after a short grace period
    (a killed process may take a moment to be gone)."""
    deadline = time.monotonic() + grace
    while True:
        new = {pid: cmd for pid, cmd in _kernel_processes().items() if pid not in before}
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Every hostile case must leave no process and no run directory behind."""
    processes, directories = _kernel_processes(), own_run_dirs()
    yield
    assert _new_processes(processes) == {}, "a process outlived its grading"
    assert own_run_dirs() - directories == set(), "a run directory was left behind"
