"""One notebook run's private directory, cgroups and kernel command, on the grader's side.

Inside the sandbox the kernel has no network, a read-only view of the system and of the Python
installation, a private writable working directory, and no view of anything else: not the course
(`solutions/`, `checks/`), not other submissions, not the grader's output. It talks to the grader
over Unix sockets in that directory (jupyter_client's IPC transport).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

from grader.engine.isolation import Isolation, can_drop_root
from grader.engine.job import KERNEL_UIDS
from grader.engine.limits import ResourceLimits, create_cgroups, kill_all, remove_cgroup, rlimits
from grader.engine.policy import KernelView, Mount, kernel_view
from grader.engine.runs import remove_stale_runs, remove_tree, run_directory

KERNEL_LAUNCHER = [sys.executable, "-m", "ipykernel_launcher"]
# Kills every process of the uid it runs as but itself (kill(-1) spares the caller): what a
# kernel started under its own uid left behind where no cgroup holds its processes.
KILL_OWN_UID = "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass\n"


class KernelJail:
    """The private directory, cgroups and launch command of one notebook run.

    `close()` kills whatever is left in the run's cgroups and deletes the directory.
    """

    def __init__(self, limits: ResourceLimits, isolation: Isolation) -> None:
        self.limits = limits
        self.isolation = isolation
        remove_stale_runs()
        self.directory = run_directory("run")
        self.cgroups = create_cgroups(f"run-{os.getpid()}-{uuid.uuid4().hex[:12]}", limits)
        # Without a sandbox a kernel sees the whole file system: as root it could read and
        # write everything the grader can (references, results). It gets a uid of its own.
        unconfined = not isolation.sandboxed and can_drop_root()
        self.uid = secrets.choice(KERNEL_UIDS) if unconfined else None

    def close(self) -> None:
        """Kill whatever is left of the run and delete its cgroups and directory."""
        self.kill_everything()
        for group in self.cgroups:
            remove_cgroup(group)
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
            kernel = bubblewrap_argv(kernel_view(self.directory)) + kernel
        elif self.uid is not None:
            uid = self.uid
            drop = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]
            kernel = ["setpriv", *drop, "--no-new-privs", "--", *kernel]
        limits = [f"--{name}={value}" for name, value in rlimits(self.limits).items()]
        kernel = ["prlimit", *limits, "--", *kernel]
        steps = [f'echo $$ > "${index}"' for index in range(1, len(self.cgroups) + 1)]
        operands = [str(group / "cgroup.procs") for group in self.cgroups]
        if self.uid is not None:  # its private directory and connection file become its own
            steps.append(f'chown -R {self.uid}:{self.uid} "${len(operands) + 1}"')
            operands.append(str(self.directory))
        if steps:
            script = f'{" && ".join(steps)} && shift {len(operands)} && exec "$@"'
            kernel = ["/bin/sh", "-c", script, "grader-jail", *operands, *kernel]
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
        """SIGKILL every process still in the run's cgroups, and of the kernel's own uid."""
        kill_all(*self.cgroups)
        if self.uid is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [sys.executable, "-I", "-S", "-c", KILL_OWN_UID],
                    user=self.uid,
                    group=self.uid,
                    extra_groups=[],
                    env={},
                    timeout=10,
                    check=False,
                )


def bubblewrap_argv(view: KernelView) -> list[str]:
    """The bubblewrap rendering of `view`: the command that runs a kernel inside it."""
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--hostname", view.hostname, "--unsetenv", "JPY_PARENT_PID"]
    for mount in view.mounts:
        argv += _bubblewrap_mount(mount)
    return [*argv, "--remount-ro", "/", "--chdir", view.directory]


def _bubblewrap_mount(mount: Mount) -> list[str]:
    match mount.kind:
        case "ro-bind" | "bind" | "dev-bind" | "symlink":
            return [f"--{mount.kind}", mount.source, mount.target]
        case "read-only":  # the host's /proc knob over the new /proc's, where there is one
            return ["--ro-bind-try", mount.target, mount.target]
        case "proc":
            return ["--proc", mount.target]
        case "tmpfs" | "dir":
            return ["--perms", f"{mount.mode:o}", f"--{mount.kind}", mount.target]


GRADING_MARK = "GRADER_GRADING"
"""Set in every kernel the grader runs: a student's `check()` left in the notebook does nothing."""


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
        GRADING_MARK: "1",
    }
