"""What a kernel may see: one description, rendered by the zygote and by bubblewrap.

`kernel_view` lists the steps that build a kernel's root, in order: a tmpfs root with read-only
binds of the system and of Python, `/proc` with its writable knobs made read-only, a minimal
`/dev`, an empty `/tmp` and the run's directory, the only writable bind. The zygote turns it into
system calls (`grader.engine.sandboxed.root_calls`), the bubblewrap path into arguments
(`grader.engine.jail.bubblewrap_argv`); a test checks that both give the same paths the same
modes. Both also give the kernel a network namespace of its own (loopback only), its own PIDs,
IPC and host name, and a read-only root.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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

DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]
STDIO = [(0, "stdin"), (1, "stdout"), (2, "stderr")]
# The kernel may be uid 0 on the host (bubblewrap as root): sysctls (core_pattern!), the magic
# SysRq key, interrupt affinities and PCI configuration must not be writable.
PROC_READ_ONLY = ["sys", "sysrq-trigger", "irq", "bus"]
HOSTNAME = "sandbox"

MountKind = Literal["ro-bind", "bind", "dev-bind", "symlink", "dir", "tmpfs", "proc", "read-only"]


@dataclass(frozen=True)
class Mount:
    """One step in building a kernel's root: `kind` at `target`, as seen from inside.

    `source` is the host path of a bind (symlinks resolved) or the text of a symlink; `mode` is
    that of a directory or a tmpfs. "read-only" makes a path of a file system mounted before
    read-only, where it exists.
    """

    kind: MountKind
    target: str
    source: str = ""
    mode: int = 0o755


@dataclass(frozen=True)
class KernelView:
    """Everything a kernel sees of the file system, and its name and working directory."""

    mounts: tuple[Mount, ...]
    directory: str  # the run's, its working directory
    hostname: str = HOSTNAME


def kernel_view(directory: Path) -> KernelView:
    """What the kernel of the run in `directory` sees: its root, built in this order."""
    mounts = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            mounts.append(Mount("symlink", path, os.readlink(path)))
        elif os.path.isdir(path):
            mounts.append(Mount("ro-bind", path, os.path.realpath(path)))
    mounts += [Mount("ro-bind", p, os.path.realpath(p)) for p in SYSTEM_FILES if os.path.exists(p)]
    mounts += [Mount("proc", "/proc")] + [Mount("read-only", f"/proc/{p}") for p in PROC_READ_ONLY]
    mounts += _dev_mounts()
    mounts += [Mount("tmpfs", "/tmp", mode=0o1777)]
    prefixes = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix})
    mounts += [Mount("ro-bind", prefix, os.path.realpath(prefix)) for prefix in prefixes]
    mounts.append(Mount("bind", str(directory), os.path.realpath(directory)))
    return KernelView(tuple(mounts), str(directory))


def _dev_mounts() -> list[Mount]:
    """A minimal /dev, and the GPU's devices for CUDA.

    No devpts (bubblewrap makes one only as part of its whole `--dev`): a kernel needs no
    terminal.
    """
    devices = [Mount("dev-bind", f"/dev/{name}", f"/dev/{name}") for name in DEVICES]
    links = [Mount("symlink", f"/dev/{name}", f"/proc/self/fd/{fd}") for fd, name in STDIO]
    links.append(Mount("symlink", "/dev/fd", "/proc/self/fd"))
    gpu = [Mount("dev-bind", device, device) for device in sorted(glob.glob("/dev/nvidia*"))]
    return [Mount("tmpfs", "/dev"), *devices, *links, Mount("dir", "/dev/shm", mode=0o1777), *gpu]
