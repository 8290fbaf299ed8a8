"""Confinement of the student's kernel: a sandbox where one can be made, limits always.

Inside the sandbox the kernel has no network, a read-only view of the system and of the Python
installation, a private writable working directory, and no view of anything else: not the course
(`solutions/`, `checks/`), not other submissions, not the grader's output. It talks to the grader
over Unix sockets in that directory (jupyter_client's IPC transport). Memory, file size and open
files are bounded by rlimits; the number of processes and the total memory of everything the
kernel starts are bounded by cgroups where they can be created, and every process left in them is
killed when the run ends.

The sandbox is made by forking the kernel from a warm zygote (`grader.zygote`) where that works
(as root, on Linux 5.12 or later), by bubblewrap otherwise. Without either, the limits still apply
and the kernel gets a clean environment and a temporary working directory.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup")
CPU_SHARES = 1024  # the weight of one process, or of one cgroup, by default
CGROUP_CONTROLLERS = ("pids", "memory", "cpu")
# What a grader process names after itself: its runs' directories and cgroups, its zygote's.
STALE_NAME = re.compile(r"(?:grader-[a-z]+|run)-(\d+)-")
# Private run directories live in memory where possible: what a kernel writes there is then
# charged to its memory cgroup instead of filling the disk.
RUN_ROOT = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
KERNEL_LAUNCHER = [sys.executable, "-m", "ipykernel_launcher"]
SYSTEM_PATHS = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
SYSTEM_FILES = [
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/fonts",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
]


@dataclass(frozen=True)
class ResourceLimits:
    """What one kernel and everything it starts may use."""

    memory_mb: int = 2048
    processes: int = 64
    file_mb: int = 256


@dataclass(frozen=True)
class Isolation:
    """How kernels are confined on this machine, as recorded in the results."""

    sandboxed: bool
    description: str
    forked: bool = False  # kernels are forked from a zygote, which sandboxes them itself


ZYGOTE = (
    "forked from a warm zygote into new namespaces: no network, read-only system, private "
    "working directory, an unprivileged uid of its own, no capabilities"
)


@functools.cache
def detect_isolation() -> Isolation:
    """How kernels can be confined here (checked once per grader process).

    Forked from a zygote where its probe passes, in bubblewrap where that runs, limits only
    otherwise; the description says why a stronger way was not taken.
    """
    problem = _zygote_problem()
    if problem is None:
        return Isolation(True, ZYGOTE, forked=True)
    fallback = _detect_bubblewrap()
    if fallback.sandboxed:
        return Isolation(True, f"{fallback.description} (no zygote: {problem})")
    return fallback


def _zygote_problem() -> str | None:
    """Why the zygote cannot confine kernels here, or None when its probe passes."""
    probe = [sys.executable, "-m", "grader.zygote", "--probe"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode == 0:
        return None
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else f"its probe exited with status {result.returncode}"


def _detect_bubblewrap() -> Isolation:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Isolation(False, "not sandboxed: bubblewrap (bwrap) is not installed")
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return Isolation(False, f"not sandboxed: bubblewrap does not run here ({error})")
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no reason"
        return Isolation(False, f"not sandboxed: bubblewrap does not run here ({reason})")
    return Isolation(True, "bubblewrap: no network, read-only system, private working directory")


class KernelJail:
    """The private directory, cgroups and launch command of one notebook run.

    `close()` kills whatever is left in the run's cgroups and deletes the directory.
    """

    def __init__(self, limits: ResourceLimits, isolation: Isolation) -> None:
        self.limits = limits
        self.isolation = isolation
        remove_stale_runs()
        self.directory = run_directory("run")
        self.cgroups = _create_cgroups(f"run-{os.getpid()}-{uuid.uuid4().hex[:12]}", limits)

    def close(self) -> None:
        """Kill whatever is left of the run and delete its cgroups and directory."""
        self.kill_everything()
        for group in self.cgroups:
            _remove_cgroup(group)
        remove_tree(self.directory)  # what stays is removed by the next grader, and reported

    @property
    def connection_file(self) -> Path:
        return self.directory / "kernel.json"

    def kernel_argv(self) -> list[str]:
        """The kernel's command line, with `{connection_file}` for jupyter_client to fill in.

        A forked kernel gets the bare command: the zygote applies the sandbox and the limits.
        """
        kernel = [*KERNEL_LAUNCHER, "-f", "{connection_file}"]
        if self.isolation.forked:
            return kernel
        if self.isolation.sandboxed:
            kernel = self._bwrap_argv() + kernel
        limits = [f"--{name}={value}" for name, value in rlimits(self.limits).items()]
        kernel = ["prlimit", *limits, "--", *kernel]
        if self.cgroups:
            joins = " && ".join(
                f'echo $$ > "${index}"' for index in range(1, len(self.cgroups) + 1)
            )
            kernel = [
                "/bin/sh",
                "-c",
                f'{joins} && shift {len(self.cgroups)} && exec "$@"',
                "grader-jail",
                *(str(group / "cgroup.procs") for group in self.cgroups),
                *kernel,
            ]
        return kernel

    def environment(self, threads: int) -> dict[str, str]:
        """A clean environment for the kernel: nothing of the grader's leaks into it."""
        return kernel_environment(self.directory, threads)

    def ran_out_of_memory(self) -> bool:
        """Whether the memory cgroup killed a process of this run."""
        for group in self.cgroups:
            control = group / "memory.oom_control"
            if control.is_file():
                for line in control.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == "oom_kill" and value.strip() not in ("", "0"):
                        return True
        return False

    def kill_everything(self) -> None:
        """SIGKILL every process still in the run's cgroups."""
        _kill_all(*self.cgroups)

    def _bwrap_argv(self) -> list[str]:
        argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        argv += ["--hostname", "sandbox", "--unsetenv", "JPY_PARENT_PID"]
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                argv += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                argv += ["--ro-bind", path, path]
        for path in SYSTEM_FILES:
            argv += ["--ro-bind-try", path, path]
        # The kernel is uid 0 on the host: sysctls must not be writable (core_pattern!).
        argv += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys"]
        argv += ["--dev", "/dev", "--tmpfs", "/tmp"]
        for device in sorted(glob.glob("/dev/nvidia*")):  # CUDA runs need the GPU's devices
            argv += ["--dev-bind", device, device]
        for prefix in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix}):
            argv += ["--ro-bind", prefix, prefix]
        directory = str(self.directory)
        return [*argv, "--bind", directory, directory, "--chdir", directory]


def kernel_environment(home: Path, threads: int) -> dict[str, str]:
    """The whole environment of a kernel (or of the zygote) whose home is `home`."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "agg",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "IPYTHONDIR": f"{home}/.ipython",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def rlimits(limits: ResourceLimits) -> dict[str, int]:
    """The rlimits of a kernel, by `prlimit` option name (soft and hard limits alike)."""
    return {
        "as": limits.memory_mb * 1024 * 1024,
        "fsize": limits.file_mb * 1024 * 1024,
        "core": 0,
        "nofile": 1024,
    }


def run_directory(kind: str) -> Path:
    """A new private directory in `RUN_ROOT`, named after this process so that a later grader
    can delete it if this one is killed before it does (see `remove_stale_runs`)."""
    return Path(tempfile.mkdtemp(prefix=f"grader-{kind}-{os.getpid()}-", dir=RUN_ROOT))


@functools.cache
def remove_stale_runs() -> None:
    """Delete the run directories and cgroups of grader processes that no longer exist.

    A grader killed outright (SIGKILL, the out-of-memory killer) leaves them behind: directories
    in memory under /dev/shm, empty cgroups. Once per grader process, as its zygote starts or
    before its first run; not in the zygote's probe, which the zygote's start waits for. What
    cannot be removed is reported in one line on stderr, and the grader goes on.
    """
    problems = [
        problem
        for path in _stale_entries(Path(RUN_ROOT), "grader-")
        if (problem := remove_tree(path)) is not None
    ]
    for controller in CGROUP_CONTROLLERS:
        for group in _stale_entries(CGROUP_V1 / controller / "grader", "run-"):
            _kill_all(group)
            _remove_cgroup(group)
    if problems:
        print(
            f"grader: {len(problems)} leftover(s) of stopped graders in {RUN_ROOT} could not be "
            f"removed (first: {problems[0]}); grading goes on",
            file=sys.stderr,
        )


def _stale_entries(folder: Path, prefix: str) -> list[Path]:
    """The entries of `folder` named `prefix...` after a grader process that has ended."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:  # no such folder, or not ours to read
        return []
    return [folder / name for name in names if name.startswith(prefix) and _owner_is_gone(name)]


def remove_tree(path: Path) -> str | None:
    """Delete `path` and everything in it; never raises. The first problem, or None.

    Whatever a run leaves is removed: trees deeper than any recursion limit or path length
    (directories are opened relative to their parent, at most `OPEN_LEVELS` at a time, and
    deeper ones are moved up), many files, names that are not UTF-8, modes that forbid reading
    or writing, fifos and sockets (unlinked, never opened).
    """
    problems: list[str] = []
    try:
        parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        return f"{path}: {error.strerror}"
    try:
        if _is_directory(parent, path.name, problems):
            _remove_directory(parent, path.name, problems)
        else:
            _unlink(parent, path.name, problems)
    finally:
        os.close(parent)
    return f"{path}: {problems[0]}" if problems else None


OPEN_LEVELS = 32


def _remove_directory(parent: int, name: str, problems: list[str]) -> None:
    """Empty and remove directory `name` of `parent`, depth-first, without recursion."""
    top = _open_directory(parent, name, problems)
    if top is None:
        return
    stack = [(top, name, _unlink_files(top, problems))]  # (open directory, name, subdirectories)
    while stack:
        directory, own_name, subdirectories = stack[-1]
        if not subdirectories:
            stack.pop()
            os.close(directory)
            _rmdir(stack[-1][0] if stack else parent, own_name, problems)
        elif len(stack) >= OPEN_LEVELS:  # moved up to the top, where it is emptied in its turn
            moved = f".grader-moved-{uuid.uuid4().hex}"
            if _move(directory, subdirectories.pop(), top, moved, problems):
                stack[0][2].append(moved)
        else:
            child_name = subdirectories.pop()
            child = _open_directory(directory, child_name, problems)
            if child is not None:
                stack.append((child, child_name, _unlink_files(child, problems)))


def _unlink_files(directory: int, problems: list[str]) -> list[str]:
    """Unlink everything in `directory` but its subdirectories, which are returned."""
    subdirectories = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if _is_directory(directory, entry.name, problems):
                    subdirectories.append(entry.name)
                else:
                    _unlink(directory, entry.name, problems)
    except OSError as error:
        problems.append(error.strerror or "cannot be listed")
    return subdirectories


def _open_directory(parent: int, name: str, problems: list[str]) -> int | None:
    """`name` in `parent`, opened, and made readable and writable if it was not (its owner)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        try:
            directory = os.open(name, flags, dir_fd=parent)
        except PermissionError:  # chmod through a handle: a link swapped in is not followed
            handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
            try:
                os.chmod(f"/proc/self/fd/{handle}", 0o700)
            finally:
                os.close(handle)
            directory = os.open(name, flags, dir_fd=parent)
        with contextlib.suppress(OSError):
            os.fchmod(directory, 0o700)
    except OSError as error:
        problems.append(f"{name!a}: {error.strerror}")
        return None
    return directory


def _is_directory(parent: int, name: str, problems: list[str]) -> bool:
    mode: list[int] = []
    _attempt(
        name,
        problems,
        lambda: mode.append(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode),
    )
    return bool(mode) and stat.S_ISDIR(mode[0])


def _unlink(parent: int, name: str, problems: list[str]) -> None:
    _attempt(name, problems, lambda: os.unlink(name, dir_fd=parent))


def _rmdir(parent: int, name: str, problems: list[str]) -> None:
    _attempt(name, problems, lambda: os.rmdir(name, dir_fd=parent))


def _move(source: int, name: str, target: int, new_name: str, problems: list[str]) -> bool:
    return _attempt(
        name, problems, lambda: os.rename(name, new_name, src_dir_fd=source, dst_dir_fd=target)
    )


def _attempt(name: str, problems: list[str], operation: Callable[[], object]) -> bool:
    """Run `operation` on entry `name`: whether it worked; why not goes to `problems` (a
    vanished entry is no problem)."""
    try:
        operation()
    except FileNotFoundError:
        return False
    except OSError as error:
        problems.append(f"{name!a}: {error.strerror}")
        return False
    return True


def _owner_is_gone(name: str) -> bool:
    """Whether the process whose id a run's name holds (`grader-run-<pid>-...`) has ended."""
    owner = STALE_NAME.match(name)
    if owner is None:
        return False
    try:
        os.kill(int(owner.group(1)), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, as another user
        return False
    return False


def _create_cgroups(name: str, limits: ResourceLimits) -> list[Path]:
    """A pids, a memory and a cpu cgroup (v1) for one run, or those that can be made.

    The cpu group makes the run one entity for the scheduler, however many processes and
    sessions it starts: without it, processes that call `setsid()` each get a fair share of
    their own and can slow the runs of other students into their time limits. The runs'
    parent group weighs as much as one busy process per core.
    """
    settings = {
        "pids": {"pids.max": str(limits.processes)},
        "memory": {"memory.limit_in_bytes": str(limits.memory_mb * 1024 * 1024)},
        "cpu": {},
    }
    parents = {"cpu": {"cpu.shares": str(CPU_SHARES * (os.cpu_count() or 1))}}
    groups = []
    for controller, values in settings.items():
        group = CGROUP_V1 / controller / "grader" / name
        try:
            group.mkdir(parents=True)
            for key, value in parents.get(controller, {}).items():
                (group.parent / key).write_text(value)
            for key, value in values.items():
                (group / key).write_text(value)
        except OSError:
            _remove_cgroup(group)
            continue
        groups.append(group)
    return groups


def _kill_all(*groups: Path) -> None:
    """SIGKILL every process in `groups`, until they are empty or two seconds have passed."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        pids = {pid for group in groups for pid in _cgroup_pids(group)}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):  # gone already
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _cgroup_pids(group: Path) -> list[int]:
    try:
        return [int(line) for line in (group / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _remove_cgroup(group: Path) -> None:
    try:
        group.rmdir()
    except OSError:
        pass
