"""Warm kernels: launched ahead of need, each used for exactly one notebook run.

A kernel's start and the import of torch, numpy and matplotlib take about three seconds, longer
than many notebooks run. Where the machine allows it, each pool has a zygote (`grader.engine`)
that imports them once and forks every kernel, already warm, into a sandbox of its own; otherwise
the pool launches jailed kernels with those modules imported at their start. Either way the pool
launches the next kernel, and kills a used one, on a thread of its own while the current run goes
on; no name is bound in the namespace the notebook sees, a run finds its kernel ready, and a
kernel is never reused: isolation between runs stays whole.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty
from subprocess import DEVNULL
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from jupyter_core.utils import ensure_event_loop, run_sync
from traitlets import Type

from grader.engine.client import Zygote
from grader.engine.isolation import detect_isolation
from grader.engine.jail import KERNEL_LAUNCHER, KernelJail
from grader.engine.job import Job
from grader.engine.limits import ResourceLimits, rlimits
from grader.engine.zygote_loop import WARM_MODULES
from grader.errors import KernelStartError
from grader.kernel_messages import SOCKET_OPTIONS, GuardedChannel, GuardedShellChannel, MessageGuard

# Run by ipykernel at start-up, outside the notebook's history; the loop variable is removed.
WARM_UP = [
    f"--IPKernelApp.exec_lines=for _grader_module in {WARM_MODULES!r}: __import__(_grader_module)",
    "--IPKernelApp.exec_lines=del _grader_module",
]
NO_HISTORY = "--HistoryManager.enabled=False"
# As the inline backend does after each cell, without a name in the namespace or a PNG drawn:
# a figure left open (a locked cell's 3-D axes) must not receive the next cell's `plt.plot`.
CLOSE_FIGURES = (
    "--IPKernelApp.exec_lines=get_ipython().events.register('post_execute', "
    "lambda: __import__('matplotlib.pyplot').pyplot.close('all'))"
)
IOPUB_WAIT = 0.05  # seconds for a first iopub message before `kernel_info` is asked again


@dataclass
class WarmKernel:
    """A launched kernel in its jail; the run that takes it must close the jail."""

    jail: KernelJail
    manager: AsyncKernelManager


class KernelPool:
    """Hands out fresh kernels, keeping `ahead` more launched and warming.

    `ahead` may be changed between runs by the pool's owner (`grader.runner.LocalRunner`, from
    its queue): 0 when no further run will need one of its kernels, so that none is launched for
    nothing.
    """

    def __init__(
        self,
        resources: ResourceLimits,
        threads: int = 1,
        ahead: int = 1,
        zygote: Zygote | None = None,
    ) -> None:
        """`zygote`: one shared with other pools, which its owner closes; by default the pool
        starts (and closes) its own where kernels are forked."""
        self.resources = resources
        self.threads = threads
        self.ahead = ahead
        self._ready: deque[Future[WarmKernel]] = deque()
        self._discarded: deque[Future[None]] = deque()
        self._background = ThreadPoolExecutor(1, thread_name_prefix="kernel-pool")
        self._zygote = zygote
        self._owns_zygote = zygote is None

    def take(self) -> WarmKernel:
        """A launched kernel; the next ones start warming at once, in the background."""
        self._raise_failed_discard()
        kernel = self._ready.popleft().result() if self._ready else self._launch(ahead=False)
        while len(self._ready) < self.ahead:
            self._ready.append(self._background.submit(self._launch, ahead=True))
        return kernel

    def discard(self, kernel: WarmKernel) -> None:
        """Kill a used kernel and remove everything of its run, in the background."""
        self._discarded.append(self._background.submit(discard, kernel))

    def prime(self) -> None:
        """Start warming now, before kernels are needed: the zygote, or `ahead + 1` kernels."""
        if detect_isolation().forked:
            self._start_zygote()
            return
        while len(self._ready) < self.ahead + 1:
            self._ready.append(self._background.submit(self._launch, ahead=True))

    def close(self) -> None:
        """Stop the kernels that were never used and wait for every discard; stop the zygote."""
        while self._ready:
            launch = self._ready.popleft()
            if launch.exception() is None:  # a launch that failed left nothing to stop
                self.discard(launch.result())
        self._background.submit(lambda: ensure_event_loop().close())  # run_sync's, there
        self._background.shutdown(wait=True)
        if self._zygote is not None and self._owns_zygote:
            self._zygote.close()
            self._zygote = None
        self._raise_failed_discard()

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_failed_discard(self) -> None:
        while self._discarded and self._discarded[0].done():
            self._discarded.popleft().result()

    def _start_zygote(self) -> Zygote:
        if self._zygote is None:
            self._zygote = Zygote()
        return self._zygote

    def _launch(self, ahead: bool) -> WarmKernel:
        isolation = detect_isolation()
        jail = KernelJail(self.resources, isolation)
        manager = _UnreadSocketsLeftOut(
            kernel_name="grader",
            kernel_spec_manager=_FixedKernelSpecs(jail.kernel_argv()),
            transport="ipc",
            connection_file=str(jail.connection_file),
            client_factory=_ReadyClient,
        )
        warm_up = [NO_HISTORY, CLOSE_FIGURES]
        if isolation.forked:
            manager.provisioner = _ForkedKernel(
                self._start_zygote(),
                jail,
                threads=self.threads,
                ahead=ahead,
                kernel_spec=manager.kernel_spec,
                parent=manager,
            )
        else:
            warm_up += WARM_UP
        try:
            run_sync(manager.start_kernel)(
                extra_arguments=warm_up,
                env=jail.environment(self.threads),
                cwd=str(jail.directory),
                stdout=DEVNULL,
                stderr=DEVNULL,
            )
        except BaseException:
            jail.close()
            raise
        return WarmKernel(jail, manager)


def discard(kernel: WarmKernel) -> None:
    """Kill a kernel at once and remove everything of its run."""
    try:
        if kernel.manager.has_kernel:
            run_sync(kernel.manager.shutdown_kernel)(now=True)
    finally:
        kernel.jail.close()


class _FixedKernelSpecs(KernelSpecManager):
    """Hands out one jail's kernel command, whatever kernel is asked for."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__()
        self.argv = argv

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(argv=self.argv, display_name="grader", language="python")


class _ForkedKernel(LocalProvisioner):
    """A kernel forked by the pool's zygote, followed through a pidfd (it is not our child).

    Signals go to the sandbox's outer process, which any of them ends, as they ended bubblewrap.
    """

    def __init__(
        self, zygote: Zygote, jail: KernelJail, threads: int, ahead: bool, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.zygote = zygote
        self.jail = jail
        self.threads = threads
        self.ahead = ahead
        self.pidfd: int | None = None

    @property
    def has_process(self) -> bool:
        return self.pidfd is not None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert cmd[: len(KERNEL_LAUNCHER)] == KERNEL_LAUNCHER, cmd
        job = Job(
            directory=str(self.jail.directory),
            cgroups=[str(group / "cgroup.procs") for group in self.jail.cgroups],
            rlimits=rlimits(self.jail.limits),
            environment=kwargs["env"],
            argv=cmd[len(KERNEL_LAUNCHER) :],
            threads=self.threads,
            ahead=self.ahead,
        )
        self.pid = self.zygote.fork_kernel(job)
        self.pidfd = os.pidfd_open(self.pid)  # before the zygote may reap it: its next request
        connection: KernelConnectionInfo = self.connection_info
        return connection

    async def poll(self) -> int | None:
        """None while the kernel runs; its exit status is the zygote's to collect, so 1 after."""
        if self.pidfd is not None and not select.select([self.pidfd], [], [], 0)[0]:
            return None
        return 1

    async def wait(self) -> int | None:
        while await self.poll() is None:
            await asyncio.sleep(0.05)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        return 1

    async def send_signal(self, signum: int) -> None:
        if self.pidfd is not None:
            try:
                signal.pidfd_send_signal(self.pidfd, signum)
            except ProcessLookupError:
                pass

    async def kill(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGKILL)
        if self.pidfd is not None:  # the manager then finds it gone without polling 0.1 s later
            select.select([self.pidfd], [], [], 1.0)

    async def terminate(self, restart: bool = False) -> None:
        await self.send_signal(signal.SIGTERM)


class _UnreadSocketsLeftOut(AsyncKernelManager):
    """A manager without the control socket it would connect at the kernel's start.

    The grader never sends on control (it kills and signals), and a socket nobody reads is one
    that a kernel could fill with messages in the grader's memory.
    """

    def _connect_control_socket(self) -> None:
        pass


class _ReadyClient(AsyncKernelClient):
    """A client that is ready once the kernel has answered `kernel_info` on shell and iopub has
    brought a message.

    jupyter_client's own client also waits for 0.2 s of silence on iopub, on every run. It has
    no heartbeat channel (a thread and a socket per run): whether the kernel lives is asked of
    its manager, which follows the process. It has only the shell and iopub channels, which
    nbclient reads, both through `grader.kernel_messages`: stdin and control would be sockets
    nobody reads.
    """

    shell_channel_class = Type(GuardedShellChannel)
    iopub_channel_class = Type(GuardedChannel)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = MessageGuard()

    def start_channels(
        self,
        shell: bool = True,
        iopub: bool = True,
        stdin: bool = True,
        hb: bool = False,
        control: bool = True,
    ) -> None:
        for option, value in SOCKET_OPTIONS.items():  # the context sets them on every socket
            self.context.setsockopt(option, value)
        super().start_channels(shell, iopub, False, False, False)
        self.shell_channel.guard = self.iopub_channel.guard = self.guard

    async def _async_is_alive(self) -> bool:
        """False once the kernel sent what the grader refuses: nbclient then ends the cell
        within a second, as for a dead kernel, and the run goes on in a fresh one."""
        alive: bool = not self.guard.refusal and await super()._async_is_alive()
        return alive

    is_alive = _async_is_alive

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        limit = 60.0 if timeout is None else timeout
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            msg_id = self.kernel_info()
            reply = await self._shell_reply(msg_id, deadline)
            if reply is not None and await self._iopub_heard():
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise KernelStartError("died as it started")
        raise KernelStartError(f"did not answer within {limit:g} s")

    async def _shell_reply(self, msg_id: str, deadline: float) -> dict[str, Any] | None:
        while time.monotonic() < deadline:
            try:
                msg: dict[str, Any] = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                return None
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        return None

    async def _iopub_heard(self) -> bool:
        """Whether iopub brings a message (the status of any `kernel_info`) soon.

        A subscriber receives nothing published before its subscription reached the kernel, so
        any message shows that no later output can be lost. When none comes, the caller asks
        again rather than waiting long: the first reply often beats the subscription.
        """
        try:
            await self.iopub_channel.get_msg(timeout=IOPUB_WAIT)
        except Empty:
            return False
        return True
