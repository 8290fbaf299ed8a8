"""What a kernel may see: the steps that build its root, for the zygote and for bubblewrap.

A tmpfs root with read-only binds of the system and of Python, `/proc` with its writable knobs
made read-only, a minimal `/dev`, an empty `/tmp` and the run's directory, the only writable one.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path

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
PROC_READ_ONLY = ["sys", "sysrq-trigger", "irq", "bus"]


@dataclass(frozen=True)
class Mount:
    """One step in building a kernel's root: `kind` at `target`, as seen from inside.

    `source` is the host path of a bind (symlinks resolved) or the text of a symlink.
    """

    kind: str
    target: str
    source: str = ""
    mode: int = 0o755


def sandbox_plan(directory: Path) -> list[Mount]:
    """How a kernel's root is built, in order: what `KernelJail` asks bubblewrap for."""
    plan = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            plan.append(Mount("symlink", path, os.readlink(path)))
        elif os.path.isdir(path):
            plan.append(Mount("ro-bind", path, os.path.realpath(path)))
    plan += [Mount("ro-bind", p, os.path.realpath(p)) for p in SYSTEM_FILES if os.path.exists(p)]
    plan += [Mount("proc", "/proc")] + [Mount("read-only", f"/proc/{p}") for p in PROC_READ_ONLY]
    plan += _dev_plan()
    plan += [Mount("tmpfs", "/tmp", mode=0o1777)]
    prefixes = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix})
    plan += [Mount("ro-bind", prefix, os.path.realpath(prefix)) for prefix in prefixes]
    return [*plan, Mount("bind", str(directory), os.path.realpath(directory))]


def _dev_plan() -> list[Mount]:
    """A minimal /dev, as bubblewrap's `--dev` makes, and the GPU's devices for CUDA."""
    devices = [Mount("dev-bind", f"/dev/{name}", f"/dev/{name}") for name in DEVICES]
    links = [Mount("symlink", f"/dev/{name}", f"/proc/self/fd/{fd}") for fd, name in STDIO]
    links += [
        Mount("symlink", "/dev/fd", "/proc/self/fd"),
        Mount("symlink", "/dev/ptmx", "pts/ptmx"),
    ]
    shared = [Mount("dir", "/dev/shm", mode=0o1777), Mount("devpts", "/dev/pts")]
    gpu = [Mount("dev-bind", device, device) for device in sorted(glob.glob("/dev/nvidia*"))]
    return [Mount("tmpfs", "/dev"), *devices, *links, *shared, *gpu]
