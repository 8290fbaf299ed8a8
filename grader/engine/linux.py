"""The Linux system calls the sandbox is built with, through ctypes (glibc wraps some not)."""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Any

# From the Linux headers (sched.h, mount.h, prctl.h, keyctl.h, sockios.h).
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x20000, 0x2000000, 0x4000000
CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x8000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
MNT_DETACH, AT_FDCWD, AT_RECURSIVE = 0x2, -100, 0x8000
READ_ONLY, NO_SUID, NO_DEV = 0x1, 0x2, 0x4  # mount_setattr's MOUNT_ATTR_*
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 1, 4, 24, 36
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 38, 47, 4
KEYCTL_JOIN_SESSION_KEYRING = 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP, IFREQ = 0x8913, 0x8914, 0x1, "16sH22x"
SYSCALLS = {  # the calls glibc has no wrapper for
    "x86_64": {"pivot_root": 155, "keyctl": 250, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "keyctl": 219, "mount_setattr": 442},
}
LIBC = ctypes.CDLL(None, use_errno=True)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    encoded = [None if text is None else text.encode() for text in (source, target, fstype)]
    options = data.encode() if data else None
    check(LIBC.mount(*encoded, ctypes.c_ulong(flags), options), f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("set", "clear", "propagation", "userns")]


def set_attributes(path: str, attributes: int, *, recursive: bool) -> None:
    attr = _MountAttr(attributes, 0, 0, 0)
    flags = ctypes.c_uint(AT_RECURSIVE if recursive else 0)
    size = ctypes.c_size_t(ctypes.sizeof(attr))
    syscall(
        "mount_setattr", ctypes.c_long(AT_FDCWD), path.encode(), flags, ctypes.byref(attr), size
    )


def prctl(option: int, value: int = 0) -> None:
    zero = ctypes.c_ulong(0)
    check(LIBC.prctl(option, ctypes.c_ulong(value), zero, zero, zero), f"prctl {option}")


def syscall(name: str, *args: Any) -> int:
    return check(LIBC.syscall(ctypes.c_long(SYSCALLS[platform.machine()][name]), *args), name)


def check(result: int, call: str) -> int:
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{call}: {os.strerror(errno)}")
    return result
