"""Run directories: private, in memory where possible, and removed whatever a run left in them.

Run directories and cgroups are named after the grader process that made them, so that a later
grader removes those of one that was killed before it could.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from grader.engine import limits

# What a grader process names after itself: its runs' directories and cgroups, its zygote's.
STALE_NAME = re.compile(r"(?:grader-[a-z]+|run)-(\d+)-")
# Private run directories live in memory where possible: what a kernel writes there is then
# charged to its memory cgroup instead of filling the disk.
RUN_ROOT = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


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
    for controller in limits.CGROUP_CONTROLLERS:
        for group in _stale_entries(limits.CGROUP_V1 / controller / "grader", "run-"):
            limits.kill_all(group)
            limits.remove_cgroup(group)
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
