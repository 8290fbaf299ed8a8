"""The grader's side of the zygote: starts it, and asks it for one kernel at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select
import subprocess
import sys
import threading
from typing import IO, Any

from grader.engine.isolation import detect_isolation
from grader.engine.jail import kernel_environment
from grader.engine.job import FORK_TIMEOUT, Job
from grader.engine.runs import remove_stale_runs, remove_tree, run_directory
from grader.errors import GraderError

READY_TIMEOUT = 300.0  # the zygote's imports, on a loaded machine with cold caches


class Zygote:
    """The warm process kernels are forked from, started at once; the first `fork_kernel` waits
    for its imports. Pools on several threads may share one: requests are served one at a time.

    Its libraries start single-threaded; each kernel sets torch's threads to its job's share.
    """

    def __init__(self) -> None:
        self.directory = run_directory("zygote")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grader.engine.zygote_loop"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=kernel_environment(self.directory, threads=1),
            cwd=self.directory,
            start_new_session=True,
        )
        remove_stale_runs()  # while the zygote imports
        self._ready = False
        self._lock = threading.Lock()

    def fork_kernel(self, job: Job) -> int:
        """Start a confined kernel for `job`; the process id of its sandbox's outer process."""
        with self._lock:
            return self._fork_kernel(job)

    def _fork_kernel(self, job: Job) -> int:
        if not self._ready:
            ready = self._reply(READY_TIMEOUT)
            if not ready.get("ready"):
                raise GraderError(f"the kernel zygote did not start: {ready.get('reason')}")
            self._ready = True
        stdin = self._pipe(self.process.stdin)
        stdin.write(json.dumps(dataclasses.asdict(job)).encode() + b"\n")
        stdin.flush()
        reply = self._reply(FORK_TIMEOUT)
        if "pid" not in reply:
            raise GraderError(f"the kernel zygote could not start a kernel: {reply.get('error')}")
        return int(reply["pid"])

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the zygote (its kernels die with it) and remove its directory."""
        self.process.kill()  # it holds nothing to save, and may still be importing
        self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            self._pipe(pipe).close()
        remove_tree(self.directory)

    def _reply(self, timeout: float) -> dict[str, Any]:
        stdout = self._pipe(self.process.stdout)
        if not select.select([stdout], [], [], timeout)[0]:
            self.process.kill()
            raise GraderError(f"the kernel zygote did not answer within {timeout:g} s")
        line = stdout.readline()
        if not line:
            raise GraderError(f"the kernel zygote exited with status {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    @staticmethod
    def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
        assert stream is not None  # both pipes are made in __init__
        return stream


def start_zygote() -> contextlib.AbstractContextManager[Zygote | None]:
    """A zygote started now, to be given to `grader.grading.grade_jobs`, where kernels are forked
    here (else nothing): a command starts it first so that its imports overlap its set-up."""
    if not detect_isolation().forked:
        return contextlib.nullcontext()
    return Zygote()
