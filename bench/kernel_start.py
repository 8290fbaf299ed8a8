"""What starting IPKernelApp costs a kernel forked from a warm process, and where it goes.

    .venv/bin/python bench/kernel_start.py [--kernels N] [--option=--Class.trait=VALUE ...]
                                           [--profile]

Imports what the zygote imports (`ZYGOTE_MODULES`, `LATER_MODULES`), then forks N children one at
a time (default 20). Each writes a connection file, times `IPKernelApp.initialize` (sockets,
the kernel object, IPython's shell, the display hooks: all that `launch_instance` does before
its event loop starts) and exits with `os._exit`; the same number of bare forks that only exit
gives the cost of the fork itself. With `--option`, each round also starts a kernel with those
options added to its command line (e.g. `--option=--HistoryManager.enabled=False`), interleaved
with the default one. With `--profile`, one more child runs the initialisation under
cProfile and prints its 25 most expensive calls (cumulative). Nothing here runs in a sandbox:
it measures the application, not the confinement. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import io
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jupyter_client.connect import write_connection_file

from grader.engine.zygote_loop import LATER_MODULES, ZYGOTE_MODULES


def in_child(work: Callable[[], float]) -> float:
    """Seconds `work` reports in a forked child, and the wall seconds of the fork and exit."""
    read, write = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child never returns into the loop, whatever `work` does
        try:
            os.close(read)
            os.write(write, f"{work()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as reply:
        seconds = float(reply.read() or "nan")
    os.waitpid(pid, 0)
    return seconds if seconds == seconds else time.perf_counter() - started


def initialise_kernel(folder: Path, options: list[str], profile: bool) -> Callable[[], float]:
    def work() -> float:
        quiet = os.open(os.devnull, os.O_WRONLY)
        report_to = os.dup(2)
        for stream in (1, 2):  # the kernel's banner and its log
            os.dup2(quiet, stream)
        connection, _ = write_connection_file(str(folder / f"kernel-{os.getpid()}.json"))
        app = importlib.import_module("ipykernel.kernelapp").IPKernelApp.instance()
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler is not None:
            profiler.runcall(app.initialize, ["-f", connection, *options])
        else:
            app.initialize(["-f", connection, *options])
        seconds = time.perf_counter() - started
        if profiler is not None:
            report = io.StringIO()
            pstats.Stats(profiler, stream=report).sort_stats("cumulative").print_stats(25)
            os.write(report_to, report.getvalue().encode())
        return seconds

    return work


def bare_fork() -> float:
    return float("nan")  # the parent measures the fork and the exit


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kernels", type=int, default=20)
    parser.add_argument("--option", action="append", default=[], help="a kernel option to try")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["MPLBACKEND"] = "agg"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # debugpy warns of frozen modules
    started = time.perf_counter()
    for module in (*ZYGOTE_MODULES, *LATER_MODULES):
        importlib.import_module(module)
    print(f"imports of the zygote: {time.perf_counter() - started:.2f} s")
    with tempfile.TemporaryDirectory(prefix="grader-kernel-start-") as folder:
        cases = {
            "IPKernelApp.initialize in a forked child": initialise_kernel(Path(folder), [], False)
        }
        if args.option:
            cases[f"the same with {' '.join(args.option)}"] = initialise_kernel(
                Path(folder), args.option, False
            )
        cases["fork and exit, nothing else"] = bare_fork
        times: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(args.kernels):
            names = list(cases)[round_ % len(cases) :] + list(cases)[: round_ % len(cases)]
            for name in names:
                times[name].append(in_child(cases[name]))
        for name, values in times.items():
            print(
                f"{name}: median {1000 * statistics.median(values):.1f} ms, "
                f"range {1000 * min(values):.1f}-{1000 * max(values):.1f} ms ({args.kernels})"
            )
        if args.profile:
            in_child(initialise_kernel(Path(folder), args.option, True))


if __name__ == "__main__":
    main()
