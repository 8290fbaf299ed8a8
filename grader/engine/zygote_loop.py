"""The zygote's own process: imports torch once, then forks every kernel into its sandbox.

Started by the grader (`python -m grader.engine.zygote_loop`, with a clean environment), it
imports numpy, torch, matplotlib (Agg) and ipykernel's IPKernelApp once (`ZYGOTE_MODULES`), then
checks that it holds no thread, no open file but its pipes to the grader and no writable shared
memory. It never runs student code. Requests and replies are JSON lines on its stdin and stdout,
one request at a time; `--probe` forks one sandbox that checks its own confinement instead.

A kernel cannot see the zygote, the grader or another kernel (PID namespace), nor signal or
ptrace them (another uid, no capabilities), nor write their memory (copy-on-write pages, and the
zygote has no writable shared mapping).
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import json
import os
import select
import sys
import threading
from pathlib import Path
from typing import Any

from grader.engine.job import Job
from grader.engine.linux import PR_SET_CHILD_SUBREAPER, prctl
from grader.engine.runs import remove_tree, run_directory
from grader.engine.sandboxed import check_confinement, fork_sandbox, start_kernel
from grader.extract import PRELOADED_PROBE, probe_code

WARM_MODULES = (
    "numpy",
    "torch",
    "matplotlib",
    "matplotlib.pyplot",
    "matplotlib.backends.backend_agg",  # at the first figure
)
# Once per pool they cost a kernel nothing: ipykernel's application and what IPython imports
# as it starts (a tenth of a kernel's start-up); torch.optim imports torch._dynamo (a second of
# CPU) when it makes its first optimizer, matplotlib mplot3d at the first 3-D axes.
ZYGOTE_MODULES = (
    *WARM_MODULES,
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",
    "pdb",
    "faulthandler",
    "tornado.platform.asyncio",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
)
LATER_MODULES = ("mpl_toolkits.mplot3d", "torch._dynamo", "torch.profiler._cupti_monitor")
"""Imported after the first kernel forked ahead of need, while no request waits: a batch's later
kernels find them imported, and a single `grader check` neither waits for them nor shares its
cores with their import."""


def _serve() -> int:
    sys.stdout = sys.stderr  # what an import might print must not reach the grader's pipe
    _preload_probe()
    problem = _warm(ZYGOTE_MODULES)
    _send({"ready": problem is None, "reason": problem or ""})
    if problem is not None:
        return 1
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # sandboxes whose outer process died are reaped here
    later: tuple[str, ...] = ()
    while True:
        if later and not select.select([0], [], [], 0)[0]:
            if _warm(later) is not None:
                return 1  # never fork from a state that fails the check: the grader is told
            later = ()
        line = _receive()
        if line is None:
            return 0
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # the grader has a pidfd of every reply's pid
                pass
        try:
            job = Job(**json.loads(line))
            _send({"pid": fork_sandbox(job, start_kernel)})
        except Exception as error:  # the grader raises it; the zygote serves on
            _send({"error": f"{type(error).__name__}: {error}"})
            continue
        if job.ahead and not set(LATER_MODULES) <= sys.modules.keys():
            later = LATER_MODULES


def _preload_probe() -> None:
    """Compile the probe once for every kernel's probe cells (`grader.extract.PROBE_CELL`), which
    check it by its digest; without OpenSSL's hashes, each probe cell compiles its own."""
    with contextlib.suppress(ImportError):
        importlib.import_module("_hashlib")
        setattr(builtins, PRELOADED_PROBE, probe_code())


def _warm(modules: tuple[str, ...]) -> str | None:
    """Import `modules`, then why forking would now share what it must not (None: nothing)."""
    for module in modules:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # the collector of a kernel then leaves the shared pages alone
    _quiesce()
    return _unforkable_state()


def _quiesce() -> None:
    """Let the imports' background threads end before the check.

    numpy's OpenBLAS starts a thread pool at import (with more than one thread allowed) and stops
    it in its handler before a fork, to start it again on its next call: one fork stops it here.
    matplotlib leaves a cancelled timer thread behind when it builds its font cache.
    """
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=5)


def _unforkable_state() -> str | None:
    """Why forking this process would share something it must not, or None."""
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return f"{threads} threads after the imports"
    files = [fd for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")]
    if sorted(files) != ["0", "1", "2"]:
        return f"open files after the imports: {sorted(files)}"
    maps = Path("/proc/self/maps").read_text().splitlines()
    if any(line.split()[1][1] == "w" and line.split()[1][3] == "s" for line in maps):
        return "writable shared memory after the imports"
    return None


def _receive() -> str | None:
    """The next request line from the grader (which sends one and waits), or None at the end."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        data += chunk
    return data.decode()


def _send(reply: dict[str, Any]) -> None:
    os.write(1, json.dumps(reply).encode() + b"\n")


def _probe() -> int:
    """Fork one sandbox, as for a kernel, whose kernel checks its own confinement."""
    directory = str(run_directory("probe"))
    try:
        job = Job(directory, cgroups=[], rlimits={}, environment={}, argv=[])
        outer = fork_sandbox(job, check_confinement)
        code = os.waitstatus_to_exitcode(os.waitpid(outer, 0)[1])
    except (OSError, RuntimeError, KeyError) as error:
        print(f"{type(error).__name__}: {error}")
        return 1
    finally:
        remove_tree(Path(directory))
    if code != 0:
        print("a sandboxed process is not confined as expected")
    return code


if __name__ == "__main__":
    status = _probe() if sys.argv[1:] == ["--probe"] else _serve()
    sys.stdout.flush()
    os._exit(status)  # no teardown of torch's modules: the grader waits for this exit
