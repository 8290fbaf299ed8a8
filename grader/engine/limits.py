"""What one kernel and everything it starts may use: rlimits, and cgroups where they can be made.

Memory, file size and open files are bounded by rlimits; the number of processes and the total
memory of everything the kernel starts are bounded by cgroups (v1), and every process left in
them is killed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup")
CPU_SHARES = 1024  # the weight of one process, or of one cgroup, by default
CGROUP_CONTROLLERS = ("pids", "memory", "cpu")


@dataclass(frozen=True)
class ResourceLimits:
    """What one kernel and everything it starts may use."""

    memory_mb: int = 2048
    processes: int = 64
    file_mb: int = 256


def rlimits(limits: ResourceLimits) -> dict[str, int]:
    """The rlimits of a kernel, by `prlimit` option name (soft and hard limits alike)."""
    return {
        "as": limits.memory_mb * 1024 * 1024,
        "fsize": limits.file_mb * 1024 * 1024,
        "core": 0,
        "nofile": 1024,
    }


def create_cgroups(name: str, limits: ResourceLimits) -> list[Path]:
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
            remove_cgroup(group)
            continue
        groups.append(group)
    return groups


def kill_all(*groups: Path) -> None:
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


def remove_cgroup(group: Path) -> None:
    """Remove an empty cgroup; never raises (one that is not empty is left to the next grader)."""
    try:
        group.rmdir()
    except OSError:
        pass
