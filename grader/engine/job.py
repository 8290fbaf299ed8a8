"""What the grader asks the zygote for: one kernel, sent as a JSON line."""

from __future__ import annotations

from dataclasses import dataclass

FORK_TIMEOUT = 60.0  # from a request to a sandbox that is up, on a loaded machine
KERNEL_UIDS = range(2**30, 2**31)  # a fresh one per kernel: no file or keyring of anyone else


@dataclass(frozen=True)
class Job:
    """What the zygote needs to start one kernel."""

    directory: str
    cgroups: list[str]  # their cgroup.procs files
    rlimits: dict[str, int]  # by prlimit option name
    environment: dict[str, str]
    argv: list[str]  # IPKernelApp's arguments
    threads: int = 1  # torch's intra-op threads (the zygote imported it with one)
    ahead: bool = False
    """Launched ahead of need: more kernels will follow, so the zygote imports `LATER_MODULES`
    once it is idle (a single `grader check` forks none ahead, and gains nothing from them)."""
