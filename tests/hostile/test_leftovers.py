"""Hostile leftovers: whatever a run leaves in its directory is removed, by the run's own
clean-up or by the next grader's stale-run clean-up, and nothing the clean-up meets stops a
grader (see conftest for what must be left behind: nothing)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.config import Config
from grader.engine import limits, runs
from grader.engine.runs import remove_stale_runs, remove_tree
from tests.conftest import submission
from tests.hostile.conftest import grade, messages

DEPTH = 3 * sys.getrecursionlimit()  # and a path far longer than PATH_MAX
# The same leftovers, made in any directory: by a test here, or by a cell in its run directory.
MAKE_LEFTOVERS = f"""
import os, socket
def make_leftovers(top, files, depth={DEPTH}):
    os.makedirs(f"{{top}}/many", exist_ok=True)
    for i in range(files):
        open(f"{{top}}/many/{{i}}", "w").close()
    for name in (b"\\xff\\xfe-not-utf8", b"line\\nbreak", b"\\x1b[31m"):
        open(os.path.join(os.fsencode(top), name), "w").close()
    os.mkfifo(f"{{top}}/fifo")
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(f"{{top}}/socket")
    os.makedirs(f"{{top}}/locked/inner")
    open(f"{{top}}/locked/inner/file", "w").close()
    os.chmod(f"{{top}}/locked/inner", 0)
    os.chmod(f"{{top}}/locked", 0)
    level = os.open(top, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=level)
        deeper = os.open("d", os.O_RDONLY, dir_fd=level)
        os.close(level)
        level = deeper
    open("file", "w", opener=lambda name, flags: os.open(name, flags, dir_fd=level)).close()
    os.close(level)
"""
namespace: dict[str, object] = {}
exec(MAKE_LEFTOVERS, namespace)  # the test's own source, run here and in a kernel
make_leftovers = namespace["make_leftovers"]


def test_a_hostile_tree_is_removed_and_links_are_not_followed(tmp_path: Path) -> None:
    top, outside = tmp_path / "run", tmp_path / "keep.txt"
    top.mkdir()
    outside.write_text("not the run's")
    make_leftovers(str(top), 20_000)  # 100 000 in a run: see below
    (top / "link").symlink_to(outside)
    (top / "dir-link").symlink_to(tmp_path)
    assert remove_tree(top) is None
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"] and outside.read_text() == "not the run's"


def test_removing_what_is_not_there_is_no_problem(tmp_path: Path) -> None:
    assert remove_tree(tmp_path / "gone") is None
    assert remove_tree(tmp_path / "no" / "parent") is not None  # said, never raised


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def run_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run directories and cgroups of this test's own, where stale ones are looked for."""
    monkeypatch.setattr(runs, "RUN_ROOT", str(tmp_path / "runs"))
    monkeypatch.setattr(limits, "CGROUP_V1", tmp_path / "cgroup")
    (tmp_path / "runs").mkdir()
    return tmp_path / "runs"


def test_a_dead_graders_leftovers_are_removed_and_a_live_ones_kept(
    run_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead, alive = (
        run_root / f"grader-run-{_dead_pid()}-x1",
        run_root / f"grader-run-{os.getpid()}-y",
    )
    stale_group = limits.CGROUP_V1 / "pids" / "grader" / f"run-{_dead_pid()}-z"
    for folder in (dead, alive, stale_group):
        folder.mkdir(parents=True)
    make_leftovers(str(dead), 1000)
    (run_root / f"grader-zygote-{_dead_pid()}-q").write_bytes(b"a file, not a folder")
    remove_stale_runs.__wrapped__()
    assert sorted(os.listdir(run_root)) == [alive.name] and not stale_group.exists()
    assert capsys.readouterr().err == ""


def test_what_cannot_be_removed_is_reported_once_and_the_grader_goes_on(
    run_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        stuck = run_root / f"grader-run-{_dead_pid()}-{index}"
        stuck.mkdir()
        make_leftovers(str(stuck), 10, depth=10)
    unlink = os.unlink

    def refuse_sockets(name: str, *, dir_fd: int | None = None) -> None:
        if name == "socket":  # as an entry the grader may not remove (another owner, a mount)
            raise PermissionError(13, "Permission denied")
        unlink(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", refuse_sockets)
    remove_stale_runs.__wrapped__()
    (line,) = capsys.readouterr().err.splitlines()
    assert "3 leftover(s) of stopped graders" in line and "'socket': Permission denied" in line
    assert all(sorted(os.listdir(path)) == ["socket"] for path in run_root.iterdir())


@pytest.mark.slow
def test_what_a_cell_leaves_in_its_run_is_removed(mini_course: Config, tmp_path: Path) -> None:
    patient = dataclasses.replace(mini_course, cell_timeout=120, notebook_timeout=300)
    cell = (
        f"{MAKE_LEFTOVERS}\nmake_leftovers('.', 100_000)\ndel make_leftovers\nanswer = 21 * scale"
    )
    clean = submission(tmp_path / "b", "answer = 21 * scale", name="02_mini")
    first, second = grade(patient, submission(tmp_path / "a", cell), clean)
    assert first.score == first.max_score == 2, messages(first)  # and no run directory is left
    assert second.score == second.max_score


NAMES = st.binary(min_size=1, max_size=12).filter(
    lambda name: b"/" not in name and b"\0" not in name and name not in (b".", b"..")
)
TREES = st.recursive(
    st.sampled_from([0o000, 0o200, 0o644]),  # a file, with its mode
    lambda children: st.dictionaries(NAMES, children),
    max_leaves=20,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(TREES.filter(lambda tree: isinstance(tree, dict)), st.sampled_from([0o000, 0o500, 0o700]))
def test_any_tree_of_any_names_and_modes_is_removed(
    tmp_path: Path, tree: dict[bytes, object], mode: int
) -> None:
    scratch = Path(tempfile.mkdtemp(dir=tmp_path))
    top = os.path.join(os.fsencode(scratch), b"run")
    _build(top, tree, mode)
    assert remove_tree(Path(os.fsdecode(top))) is None
    assert os.listdir(scratch) == []


def _build(path: bytes, tree: object, mode: int) -> None:
    if isinstance(tree, int):
        with open(path, "w"):
            pass
        os.chmod(path, tree)
        return
    assert isinstance(tree, dict)
    os.mkdir(path)
    for name, child in tree.items():
        _build(os.path.join(path, name), child, mode)
    os.chmod(path, mode)
