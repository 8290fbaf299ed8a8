"""Runs on a Dask cluster: `DaskRunner`, the `grader.runner.Runner` that sends each notebook run
to a worker of a `distributed` scheduler (`grader grade --cluster tcp://host:8786`).

Each Dask worker keeps its own zygote and warm kernels (`KernelHost`, a worker plugin set up as
the first runner of this grader's version connects and kept until the worker stops, so that the
next command, or another grader sharing the cluster, finds them warm), so the sandbox is the
worker's, chosen there as it is here (the zygote where the worker is root, else bubblewrap, else
limits only) and recorded in every run's result. Requests and results cross as JSON text
(`RunRequest.to_json`; `ExecutedNotebook.from_json` reads every result back here): the course
never has to be on the workers, and nothing a kernel sent reaches the client but through that
one decoder.

A worker that dies mid-run loses nothing: the scheduler gives its runs to other workers (a run is
given up only after `distributed.scheduler.allowed-failures` workers died running it, a
`ClusterError`), and each run has one future, so each result is recorded once, by the client.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from importlib.metadata import version

import distributed
from distributed.comm.addressing import get_address_host

from grader.engine.client import Zygote, start_zygote
from grader.engine.limits import ResourceLimits
from grader.errors import ClusterError
from grader.execute import run_notebook
from grader.pool import KernelPool
from grader.runner import ExecutedNotebook, RunRequest

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler, and for it to have a worker
STARTED_TOPIC = "grader-run-started"  # a worker's event: the run of this key has begun there
SOFTWARE = ("autodiff-grader", "torch")  # what every worker must have, in this very version


@dataclass
class _Run:
    """One run sent to the cluster: the future the pipeline holds, and Dask's."""

    future: Future[ExecutedNotebook]
    remote: distributed.Future[str]


class DaskRunner:
    """Runs notebooks on the Dask cluster whose scheduler is at `address`.

    Connecting checks that the cluster has a worker and that every worker has this grader and
    this torch; either failing is a `ClusterError` naming what to do. `capacity` is the workers'
    threads when it connects: run each worker with `--nthreads` kernels at once.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self._client = _connect(address)
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._plugin = f"grader-kernels-{version('autodiff-grader')}"
        try:
            workers = _checked_workers(self._client, address)
            self._capacity = sum(workers.values())
            self._client.subscribe_topic(STARTED_TOPIC, self._started)
            host = KernelHost(_kernel_threads(self._client, workers))
            self._client.register_plugin(host, name=self._plugin)
        except BaseException:
            self._client.close()
            raise

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, request: RunRequest) -> Future[ExecutedNotebook]:
        """Send a run to the scheduler, which gives it to a worker, the highest priority first."""
        future: Future[ExecutedNotebook] = Future()
        key = f"grader-run-{uuid.uuid4().hex}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the runner is closed")
            remote = self._client.submit(
                run_on_worker,
                self._plugin,
                json.dumps(request.to_json()),
                key=key,
                priority=request.priority,
                pure=False,
            )
            self._runs[key] = _Run(future, remote)
        future.add_done_callback(functools.partial(_cancel_on_cluster, remote))
        remote.add_done_callback(self._finished)
        return future

    def close(self) -> None:
        """Cancel the runs no worker has started, wait for those running, disconnect."""
        with self._lock:
            self._closed = True
            runs = list(self._runs.values())
        for run in runs:
            run.future.cancel()  # only one not started yet, as far as the scheduler told us
        for run in runs:
            if not run.future.cancelled():
                run.future.exception()  # waits; what went wrong is the pipeline's to say
        self._client.close()  # the workers keep their kernels warm for the next command

    def __enter__(self) -> DaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self, event: tuple[float, str]) -> None:
        """A worker began a run: from now on it is not cancelled, but finished."""
        with self._lock:
            run = self._runs.get(event[1])
            if run is not None:
                _mark_running(run.future)

    def _finished(self, remote: distributed.Future[str]) -> None:
        with self._lock:
            run = self._runs.pop(str(remote.key), None)
            if run is None or not _mark_running(run.future):
                return  # cancelled here: its task was cancelled with it
        try:
            result = _result(remote, self.address)
        except BaseException as error:
            run.future.set_exception(error)
        else:
            run.future.set_result(result)


def _mark_running(future: Future[ExecutedNotebook]) -> bool:
    """Whether `future` runs (now, if it did not yet), rather than was cancelled."""
    if future.cancelled():
        return False
    return future.running() or future.set_running_or_notify_cancel()


def _cancel_on_cluster(remote: distributed.Future[str], future: Future[ExecutedNotebook]) -> None:
    """A run cancelled here (by `close` or by the pipeline) is cancelled on the cluster too."""
    if future.cancelled():
        remote.cancel()


def _connect(address: str) -> distributed.Client:
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address} ({_first_line(error)}); start it with "
            "`dask scheduler` and check the address and that its port is open from here"
        ) from None


def _checked_workers(client: distributed.Client, address: str) -> dict[str, int]:
    """The cluster's workers and their threads, each known to run the grader as it runs here."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise ClusterError(
            f"the Dask cluster at {address} has no workers; start some with `dask worker {address}`"
        ) from None
    for package in SOFTWARE:
        answers = client.run(version, package, on_error="return")
        problem = software_problem(package, version(package), answers)
        if problem:
            raise ClusterError(f"the Dask cluster at {address}: {problem}")
    nthreads: dict[str, int] = client.nthreads()
    return nthreads


def software_problem(package: str, wanted: str, answers: Mapping[str, object]) -> str:
    """What is wrong with `package` on the workers, from each worker's version of it (or the
    error finding it); "" when every worker has version `wanted`."""
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            return (
                f"worker {worker} has no {package} ({_first_line(answer)}); install the same "
                f"{package} {wanted} as here on every worker"
            )
        if answer != wanted:
            return (
                f"worker {worker} has {package} {answer}, this grader {wanted}; install the same "
                "version on every worker"
            )
    return ""


def _kernel_threads(client: distributed.Client, workers: dict[str, int]) -> dict[str, int]:
    """torch threads per kernel on each worker: the cores it may use shared by every worker
    thread on its machine, so that workers on one machine do not oversubscribe it (as
    `--workers` here)."""
    cores: dict[str, set[int]] = client.run(os.sched_getaffinity, 0)  # a Slurm job's own cores
    hosts = {address: get_address_host(address) for address in workers}
    per_host: dict[str, int] = {}
    for address, threads in workers.items():
        per_host[hosts[address]] = per_host.get(hosts[address], 0) + threads
    return {
        address: max(1, len(cores.get(address, ())) // per_host[hosts[address]])
        for address in workers
    }


def _result(remote: distributed.Future[str], address: str) -> ExecutedNotebook:
    """A finished run read back, or the error that ended it."""
    status = remote.status
    if status == "cancelled":  # not by this runner: the scheduler forgot it
        raise ClusterError(f"a run was lost: the Dask scheduler at {address} went away")
    error = remote.exception() if status == "error" else None
    if error is not None:
        if isinstance(error, distributed.KilledWorker):
            raise ClusterError(
                f"a run was given up: every worker that ran it died ({_first_line(error)})"
            ) from None
        raise error
    text = remote.result()
    try:
        return ExecutedNotebook.from_json(json.loads(text))
    except ValueError as error:
        raise ClusterError(f"a worker sent a result that is not a run ({error})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


# ---- On the workers. ----


def run_on_worker(plugin: str, request_text: str) -> str:
    """Run one request on the warm kernels of this worker's `plugin`; the run as JSON text (the
    task `DaskRunner` sends)."""
    worker = distributed.get_worker()
    worker.log_event(STARTED_TOPIC, worker.get_current_task())
    host = worker.plugins.get(plugin)
    if not isinstance(host, KernelHost):  # only where the runner has closed meanwhile
        raise ClusterError(f"worker {worker.address} has no grader kernels set up")
    request = RunRequest.from_json(json.loads(request_text))
    return json.dumps(host.run(request).to_json())


class KernelHost(distributed.WorkerPlugin):
    """A Dask worker plugin: the worker's zygote, where it forks kernels, and a warm pool of
    kernels per worker thread, made as runs come and closed with the worker."""

    idempotent = True  # registered again by each command: the one already there is kept

    def __init__(self, threads: dict[str, int]) -> None:
        """`threads`: torch threads per kernel, by worker address (a worker that joined later
        shares its machine's cores among its own threads)."""
        self._threads_by_worker = threads

    def setup(self, worker: distributed.Worker) -> None:
        self._pools: dict[int, KernelPool] = {}  # by worker thread
        self._stack = contextlib.ExitStack()
        self._zygote: Zygote | None = self._stack.enter_context(start_zygote())  # imports now
        own_share = max(1, len(os.sched_getaffinity(0)) // worker.state.nthreads)
        self._threads = self._threads_by_worker.get(worker.address, own_share)

    def teardown(self, worker: distributed.Worker) -> None:
        try:
            for pool in self._pools.values():
                pool.close()
        finally:  # the zygote stops even where a kernel could not be
            self._pools.clear()
            self._stack.close()

    def run(self, request: RunRequest) -> ExecutedNotebook:
        """The run, with the worker's own share of its machine's cores for torch."""
        limits = replace(request.limits, threads=self._threads)
        pool = self._pool(limits.resources, limits.threads)
        # A kernel always warms ahead: the scheduler sends a worker its next run only as one
        # ends, too late to start its kernel then; at the end one per thread goes unused.
        pool.ahead = 1
        return run_notebook(request.notebook_node(), list(request.probes), limits, pool)

    def _pool(self, resources: ResourceLimits, threads: int) -> KernelPool:
        """This thread's pool, made anew where a run asks for other kernels than it has."""
        thread = threading.get_ident()
        pool = self._pools.get(thread)
        if pool is not None and (pool.resources, pool.threads) == (resources, threads):
            return pool
        if pool is not None:
            pool.close()
        pool = self._pools[thread] = KernelPool(resources, threads, ahead=0, zygote=self._zygote)
        return pool
