"""Warm kernels: launched ahead of need, each used for exactly one notebook run.

A kernel's start and the import of torch, numpy and matplotlib take about three seconds, longer
than many notebooks run. The pool launches the next jailed kernel while the current run goes on,
with those modules already imported (and no name bound in the namespace the notebook sees), so a
run finds its kernel ready. A kernel is never reused: isolation between runs stays whole.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from subprocess import DEVNULL

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from grader.sandbox import KernelJail, ResourceLimits, detect_isolation

WARM_MODULES = ("numpy", "torch", "matplotlib", "matplotlib.pyplot")
# Run by ipykernel at start-up, outside the notebook's history; the loop variable is removed.
WARM_UP = [
    f"--IPKernelApp.exec_lines=for _grader_module in {WARM_MODULES!r}: __import__(_grader_module)",
    "--IPKernelApp.exec_lines=del _grader_module",
    "--HistoryManager.enabled=False",
]


@dataclass
class WarmKernel:
    """A launched kernel in its jail; the run that takes it must close the jail."""

    jail: KernelJail
    manager: AsyncKernelManager


class KernelPool:
    """Hands out fresh kernels, keeping `ahead` more launched and warming."""

    def __init__(self, resources: ResourceLimits, threads: int = 1, ahead: int = 1) -> None:
        self.resources = resources
        self.threads = threads
        self.ahead = ahead
        self._ready: deque[WarmKernel] = deque()

    def take(self) -> WarmKernel:
        """A launched kernel; the next one starts warming at once."""
        kernel = self._ready.popleft() if self._ready else self._launch()
        while len(self._ready) < self.ahead:
            self._ready.append(self._launch())
        return kernel

    def prime(self) -> None:
        """Launch kernels now, before they are needed."""
        while len(self._ready) < self.ahead + 1:
            self._ready.append(self._launch())

    def close(self) -> None:
        """Stop the kernels that were never used."""
        while self._ready:
            discard(self._ready.popleft())

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _launch(self) -> WarmKernel:
        jail = KernelJail(self.resources, detect_isolation())
        manager = AsyncKernelManager(
            kernel_name="grader",
            kernel_spec_manager=jail.kernel_specs(),
            transport="ipc",
            connection_file=str(jail.connection_file),
        )
        run_sync(manager.start_kernel)(
            extra_arguments=WARM_UP,
            env=jail.environment(self.threads),
            cwd=str(jail.directory),
            stdout=DEVNULL,
            stderr=DEVNULL,
        )
        return WarmKernel(jail, manager)


def discard(kernel: WarmKernel) -> None:
    """Kill a kernel at once and remove everything of its run."""
    try:
        if kernel.manager.has_kernel:
            run_sync(kernel.manager.shutdown_kernel)(now=True)
    finally:
        kernel.jail.close()
