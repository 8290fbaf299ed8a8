from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.engine import runs
from grader.engine.isolation import Isolation
from grader.engine.jail import KERNEL_LAUNCHER, KernelJail
from grader.engine.limits import ResourceLimits
from grader.engine.runs import RUN_ROOT
from tests.conftest import ROOT


@pytest.fixture
def jail() -> Iterator[KernelJail]:
    jail = KernelJail(ResourceLimits(memory_mb=1500, processes=20, file_mb=10), Isolation(True, ""))
    yield jail
    jail.close()


def test_kernel_environment_is_clean(jail: KernelJail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADER_HIDDEN_SEED", "12345")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    environment = jail.environment(threads=2)
    assert "GRADER_HIDDEN_SEED" not in environment and "AWS_SECRET_ACCESS_KEY" not in environment
    assert environment["OMP_NUM_THREADS"] == "2" and environment["MPLBACKEND"] == "agg"
    assert environment["HOME"] == str(jail.directory)


def test_run_directory_is_private_and_in_memory_where_possible(jail: KernelJail) -> None:
    assert jail.directory.parent.as_posix() == RUN_ROOT
    assert jail.connection_file.parent == jail.directory


def test_sandbox_shows_the_kernel_nothing_of_the_course(jail: KernelJail) -> None:
    argv = jail.kernel_argv()
    bwrap = argv.index("bwrap")
    assert {"--unshare-all", "--die-with-parent", "--new-session"} <= set(argv[bwrap:])
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    bound = [argv[i + 1] for i, flag in enumerate(argv) if flag in ("--bind", "--ro-bind")]
    writable = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--bind"]
    assert writable == [str(jail.directory)]
    for course_path in (ROOT, ROOT / "solutions", ROOT / "checks", ROOT / "exercises"):
        assert str(course_path) not in bound
    assert sys.prefix in bound
    read_only = [argv[i + 1] for i, flag in enumerate(argv) if flag == "--ro-bind-try"]
    assert {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} <= set(read_only)


def test_limits_are_applied_before_the_sandbox(jail: KernelJail) -> None:
    argv = jail.kernel_argv()
    prlimit = argv.index("prlimit")
    assert f"--as={1500 * 1024 * 1024}" in argv[prlimit:]
    assert f"--fsize={10 * 1024 * 1024}" in argv[prlimit:]
    assert prlimit < argv.index("bwrap")
    for group in jail.cgroups:
        assert str(group / "cgroup.procs") in argv


def test_closing_removes_the_directory_and_cgroups(jail: KernelJail) -> None:
    jail.close()
    assert not jail.directory.exists()
    assert all(not group.exists() for group in jail.cgroups)


def test_a_forked_kernel_gets_the_bare_command() -> None:
    jail = KernelJail(ResourceLimits(), Isolation(True, "", forked=True))
    try:  # the zygote applies the sandbox and the limits itself
        assert jail.kernel_argv() == [*KERNEL_LAUNCHER, "-f", "{connection_file}"]
    finally:
        jail.close()


def test_what_a_killed_grader_left_behind_is_removed(jail: KernelJail) -> None:
    # A grader killed outright leaves its runs' directories and cgroups, named after its
    # process id; the next grader removes them, and nothing of a grader still running.
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = Path(RUN_ROOT) / f"grader-run-{gone.pid}-abcd"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "file").write_text("x")
    zygote = Path(RUN_ROOT) / f"grader-zygote-{gone.pid}-abcd"
    zygote.mkdir()
    groups = [group.parent / f"run-{gone.pid}-abcd" for group in jail.cgroups]
    for group in groups:
        group.mkdir()
    runs.remove_stale_runs.cache_clear()
    runs.remove_stale_runs()
    assert not left.exists() and not zygote.exists()
    assert [group for group in groups if group.exists()] == []
    # This process's own run is still running: it stays.
    assert jail.directory.exists() and str(os.getpid()) in jail.directory.name
    assert all(group.exists() and str(os.getpid()) in group.name for group in jail.cgroups)
