"""The forked sandbox, from the zygote's fork to the kernel's start.

1. The outer process, which the grader tracks and kills, starts a new session, dies with the
   zygote, joins the run's cgroups, takes the run's rlimits, hands the run's directory to a fresh
   unprivileged uid and unshares a PID namespace.
2. Its child, PID 1 there, unshares mount, network, IPC, UTS and cgroup namespaces, builds a new
   root (`root_calls`: the zygote's rendering of `grader.engine.policy.kernel_view`), pivots
   into it and detaches the old one. It then drops root for good (empty bounding set, the
   kernel's uid and gid, no groups, no new privileges, its own session keyring), checks that in
   /proc/self/status, forks the kernel and reaps orphans until the kernel exits.
3. The kernel closes what it inherited, takes the run's environment and starts IPKernelApp on the
   run's connection file.

From `fork_sandbox`'s fork on, nothing returns into the zygote's loop.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import importlib
import os
import resource
import secrets
import select
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from grader.engine.job import FORK_TIMEOUT, KERNEL_UIDS, Job
from grader.engine.linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    IFF_UP,
    IFREQ,
    KEYCTL_JOIN_SESSION_KEYRING,
    LIBC,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    NO_DEV,
    NO_SUID,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    READ_ONLY,
    SIOCGIFFLAGS,
    SIOCSIFFLAGS,
    check,
    mount,
    prctl,
    set_attributes,
    syscall,
)
from grader.engine.policy import KernelView, Mount, kernel_view

NEW_ROOT, OLD_ROOT = "/newroot", "/oldroot"  # while the new root is built, under a scratch root
BIND_ATTRIBUTES = {
    "ro-bind": READ_ONLY | NO_SUID | NO_DEV,
    "bind": NO_SUID | NO_DEV,
    "dev-bind": NO_SUID,
}
FILESYSTEMS = {  # kind: (mount flags, options)
    "tmpfs": (MS_NOSUID | MS_NODEV, "mode={mode:o}"),
    "proc": (MS_NOSUID | MS_NODEV | MS_NOEXEC, ""),
}


@dataclass(frozen=True)
class RootCall:
    """One step of building the new root, as the system is asked for it (paths as seen while the
    new root is built: under `NEW_ROOT`, the host under `OLD_ROOT`)."""

    call: Literal["symlink", "mkdir", "mount", "bind"]
    target: str
    source: str = ""  # a bind's source, a symlink's text, a file system's type
    flags: int = 0  # a file system's mount flags; a bind's mount_setattr attributes
    options: str = ""  # a file system's
    mode: int = 0o755  # a directory's
    optional: bool = False  # skipped where the source does not exist


def root_calls(view: KernelView) -> list[RootCall]:
    """The zygote's rendering of `view`: what `_build_root` asks the system for, in order."""
    return [_root_call(mount) for mount in view.mounts]


def _root_call(mount: Mount) -> RootCall:
    target = NEW_ROOT + mount.target
    match mount.kind:
        case "symlink":
            return RootCall("symlink", target, mount.source)
        case "dir":
            return RootCall("mkdir", target, mode=mount.mode)
        case "tmpfs" | "proc":
            flags, options = FILESYSTEMS[mount.kind]
            return RootCall("mount", target, mount.kind, flags, options.format(mode=mount.mode))
        case "read-only":  # a path of the new root's own /proc, over itself
            return RootCall("bind", target, target, READ_ONLY | NO_SUID | NO_DEV, optional=True)
        case "ro-bind" | "bind" | "dev-bind":
            return RootCall("bind", target, OLD_ROOT + mount.source, BIND_ATTRIBUTES[mount.kind])


def fork_sandbox(job: Job, start: Callable[[Job], object]) -> int:
    """Fork a sandbox that runs `start(job)` as its kernel; its outer process's id once it is up."""
    uid, zygote = secrets.choice(KERNEL_UIDS), os.getpid()
    view = kernel_view(Path(job.directory))
    report, reporter = os.pipe()
    outer = os.fork()
    if outer == 0:
        _child(lambda: _outer(job, uid, zygote, view, reporter, start), reporter)
    os.close(reporter)
    ready = os.read(report, 4096) if select.select([report], [], [], FORK_TIMEOUT)[0] else b""
    os.close(report)
    if ready != b"ok":
        os.kill(outer, signal.SIGKILL)
        os.waitpid(outer, 0)
        raise RuntimeError(ready.decode() or "the sandbox did not come up in time")
    return outer


def _child(work: Callable[[], object], reporter: int | None = None) -> NoReturn:
    """Run `work` in a forked process and exit: the zygote's code after the fork never runs."""
    code = 1
    try:
        work()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # reported to the zygote, which raises it
        if reporter is not None:
            os.write(reporter, f"{type(error).__name__}: {error}".encode()[:4096])
    finally:
        os._exit(code)


def _outer(
    job: Job,
    uid: int,
    zygote: int,
    view: KernelView,
    reporter: int,
    start: Callable[[Job], object],
) -> NoReturn:
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a signal from the grader ends the sandbox
    _close_files(keep=(reporter,))
    for procs in job.cgroups:
        Path(procs).write_text(str(os.getpid()))
    for name, value in job.rlimits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name.upper()}"), (value, value))
    for path in (job.directory, *(entry.path for entry in os.scandir(job.directory))):
        os.chown(path, uid, uid, follow_symlinks=False)
    check(LIBC.unshare(CLONE_NEWPID), "unshare")
    alive, alive_writer = os.pipe()  # closes, and so reads as ready, when this process dies
    init = os.fork()
    if init == 0:
        os.close(alive_writer)
        _child(lambda: _init(job, uid, view, reporter, alive, start), reporter)
    os.close(alive)
    os.close(reporter)
    code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
    os._exit(code if code >= 0 else 128 - code)


def _init(
    job: Job,
    uid: int,
    view: KernelView,
    reporter: int,
    alive: int,
    start: Callable[[Job], object],
) -> NoReturn:
    namespaces = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
    check(LIBC.unshare(namespaces), "unshare")
    _build_root(root_calls(view))
    hostname = view.hostname.encode()
    check(LIBC.sethostname(hostname, ctypes.c_size_t(len(hostname))), "sethostname")
    _loopback_up()
    os.chdir(view.directory)
    _drop_privileges(uid)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after the uid change, which clears it
    if select.select([alive], [], [], 0)[0]:
        os._exit(1)  # the outer process died before the death signal was set
    syscall("keyctl", ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None)
    kernel = os.fork()
    if kernel == 0:
        _child(lambda: start(job))
    os.write(reporter, b"ok")
    os.close(reporter)
    while True:  # PID 1 reaps orphans, and ends the namespace when the kernel exits
        pid, status = os.wait()
        if pid == kernel:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def start_kernel(job: Job) -> None:
    prctl(PR_SET_DUMPABLE, 1)  # as any process of its uid: the uid change cleared it
    _close_files()
    os.environ.clear()
    os.environ.update(job.environment)
    sys.argv = [sys.executable, *job.argv]
    sys.path[0] = job.directory  # as `python -m ipykernel_launcher` run there would have it
    tempfile.tempdir = None
    for name in [m for m in sys.modules if m == "grader" or m.startswith("grader.")]:
        del sys.modules[name]  # the kernel cannot import the grader, as in bubblewrap
    torch = importlib.import_module("torch")
    torch.seed()  # the zygote's generator state is every kernel's
    torch.set_num_threads(job.threads)
    importlib.import_module("ipykernel.kernelapp").IPKernelApp.launch_instance(argv=job.argv)
    atexit._run_exitfuncs()


def check_confinement(job: Job) -> None:
    """The probe's kernel: fails unless it is confined as a kernel must be."""
    checks = {
        "an unprivileged uid": os.getuid() in KERNEL_UIDS,
        "its own PIDs": sorted(p for p in os.listdir("/proc") if p.isdigit()) == ["1", "2"],
        "no network": [name for _, name in socket.if_nameindex()] == ["lo"],
        "a read-only Python": not os.access(sys.prefix, os.W_OK),
        "a writable directory": os.access(job.directory, os.W_OK),
    }
    missing = [name for name, holds in checks.items() if not holds]
    if missing:
        raise RuntimeError(f"a sandboxed process lacks {', '.join(missing)}")


def _build_root(calls: list[RootCall]) -> None:
    """Pivot into a fresh root built by `calls`; nothing else of the host stays reachable."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    os.mkdir("/tmp" + NEW_ROOT)
    os.mkdir("/tmp" + OLD_ROOT)
    mount("tmpfs", "/tmp" + NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    syscall("pivot_root", b"/tmp", ("/tmp" + OLD_ROOT).encode())
    os.chdir("/")
    for call in calls:
        _apply(call)
    check(LIBC.umount2(OLD_ROOT.encode(), MNT_DETACH), "umount2")
    os.chdir(NEW_ROOT)
    syscall("pivot_root", b".", b".")  # the new root, with the scaffolding stacked above it
    check(LIBC.umount2(b".", MNT_DETACH), "umount2")
    os.chdir("/")
    set_attributes("/", READ_ONLY | NO_SUID | NO_DEV, recursive=False)


def _apply(call: RootCall) -> None:
    if call.optional and not os.path.exists(call.source):
        return
    if call.call == "symlink":
        os.symlink(call.source, call.target)
    elif call.call == "mkdir":
        os.makedirs(call.target, exist_ok=True)
        os.chmod(call.target, call.mode)
    elif call.call == "mount":
        os.makedirs(call.target, exist_ok=True)
        mount(call.source, call.target, call.source, call.flags, call.options)
    else:
        _bind(call.source, call.target, call.flags)


def _bind(source: str, target: str, attributes: int) -> None:
    if not os.path.lexists(target):
        if os.path.isdir(source):
            os.makedirs(target)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    mount(source, target, None, MS_BIND | MS_REC)
    set_attributes(target, attributes, recursive=True)


def _drop_privileges(uid: int) -> None:
    """Give up root for good: the kernel's uid and gid, no capability, no way back."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for capability in range(last + 1):
        prctl(PR_CAPBSET_DROP, capability)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # clears the permitted and effective sets
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    expected = {f"Cap{s}": "0" * 16 for s in ("Inh", "Prm", "Eff", "Bnd", "Amb")}
    expected |= {"Uid": f"{uid}\t" * 4, "Gid": f"{uid}\t" * 4, "Groups": "", "NoNewPrivs": "1"}
    wrong = {
        key: status[key].strip() for key in expected if status[key].strip() != expected[key].strip()
    }
    if wrong:
        raise RuntimeError(f"privileges not dropped: {wrong}")


def _loopback_up() -> None:
    """Bring up `lo` in the new network namespace, as bubblewrap does."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack(IFREQ, b"lo", 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(control, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(control, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def _close_files(keep: tuple[int, ...] = ()) -> None:
    """/dev/null on 0, 1 and 2; every other inherited file descriptor but `keep` closed."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    low = 3
    for fd in [*sorted(keep), os.sysconf("SC_OPEN_MAX")]:
        os.closerange(low, fd)
        low = fd + 1
