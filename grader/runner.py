"""Where notebook runs are executed: one seam, shaped like `concurrent.futures.Executor`.

The pipeline (`grader.grading`) hands each run to a `Runner` and gets a future of its result; it
does not know where the run goes. Requests and results are frozen dataclasses of plain data with
`to_json()` (a dict that `json.dumps` writes) and `from_json()` (which reads it back, ValueError
for anything else), so that a runner may send them to other machines:

- `RunRequest`: the notebook as nbformat v4 JSON, already given its variant's parameters; the
  probe sources (`grader.extract.probe_sources`) run after it in the same kernel; the `Limits`
  of the run; a `priority` (higher first, as Dask's `priority=`: the pipeline raises reference
  and follow-through runs, which other work waits for).
- `ExecutedNotebook` (what `grader.execute.run_notebook` returns): a `CellOutcome` per code
  cell, a `ProbeOutcome` per probe, the seconds the run took and the isolation its kernel had
  (`grader.engine.isolation.Isolation.description`), recorded per run.

A runner's contract:

- `capacity`: how many runs it runs at once; the pipeline keeps about that many notebooks in
  flight, so that every slot has a run waiting and results come early, in order.
- `submit(request)` returns at once. A student's failure (a cell that raises, times out or
  kills its kernel) is data in the result; the future's exception is for the grader's own
  failures (a `grader.errors.GraderError` such as `KernelStartError`), which stop the batch.
- `close()` (or leaving its `with` block) cancels the runs not started, waits for those
  running and frees what the runner holds (kernels, processes); `submit` after it is an error.

`LocalRunner` runs them on this machine: a worker thread per slot, started as runs come, each
with its own pool of warm kernels (`grader.pool.KernelPool`) forked from one zygote where the
machine allows it; a worker launches its next kernel ahead while it runs one, when its queue
shows another run will come to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from grader.engine.client import start_zygote
from grader.engine.limits import ResourceLimits
from grader.extract import CELL_STATUSES, CellOutcome

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from grader.pool import KernelPool

__all__ = ["ExecutedNotebook", "Limits", "LocalRunner", "ProbeOutcome", "RunRequest", "Runner"]


@dataclass(frozen=True)
class Limits:
    """Time and output limits of one notebook run, and the kernel's resource limits."""

    cell_timeout: float = 60.0
    notebook_timeout: float = 300.0
    probe_timeout: float = 10.0
    output_kb: int = 1024
    resources: ResourceLimits = field(default_factory=ResourceLimits)
    threads: int = 1


@dataclass(frozen=True)
class ProbeOutcome:
    """The payload text of one probe cell, or why there is none."""

    payload: str | None
    failure: str = ""


@dataclass(frozen=True)
class ExecutedNotebook:
    """What one run produced: an outcome per code cell and per probe, and how its kernel was
    confined (`grader.engine.isolation.Isolation.description`)."""

    cells: tuple[CellOutcome, ...]
    probes: tuple[ProbeOutcome, ...]
    seconds: float
    isolation: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data, which `from_json` reads back."""
        return {
            "cells": [dataclasses.asdict(cell) for cell in self.cells],
            "probes": [dataclasses.asdict(probe) for probe in self.probes],
            "seconds": self.seconds,
            "isolation": self.isolation,
        }

    @classmethod
    def from_json(cls, data: Any) -> ExecutedNotebook:
        """The run `to_json` wrote; ValueError for anything else (the texts in it are the
        kernel's, cleaned later by `grader.extract.collect_run`)."""
        try:
            cells = tuple(_cell_from_json(cell) for cell in data["cells"])
            probes = tuple(_probe_from_json(probe) for probe in data["probes"])
            seconds, isolation = float(data["seconds"]), data["isolation"]
        except (KeyError, TypeError, OverflowError) as error:  # Overflow: float(10**400)
            raise ValueError(f"not a notebook run: {error!r}") from None
        if not isinstance(isolation, str):
            raise ValueError("not a notebook run: its isolation is not a text")
        return cls(cells, probes, seconds, isolation)


def _cell_from_json(data: dict[str, Any]) -> CellOutcome:
    fields = (data["grade_id"], data["status"], data["ename"], data["evalue"])
    if data["status"] not in CELL_STATUSES or not all(isinstance(f, str) for f in fields):
        raise ValueError(f"not a cell outcome: {data!r:.200}")
    return CellOutcome(*fields)


def _probe_from_json(data: dict[str, Any]) -> ProbeOutcome:
    payload, failure = data["payload"], data["failure"]
    if not (payload is None or isinstance(payload, str)) or not isinstance(failure, str):
        raise ValueError("not a probe outcome")
    return ProbeOutcome(payload, failure)


@dataclass(frozen=True)
class RunRequest:
    """One notebook run: the notebook (nbformat v4 JSON, parameters given), then the probes."""

    notebook: dict[str, Any]
    probes: tuple[str, ...]
    limits: Limits
    priority: int = 0
    """Higher runs first; runs of one priority in the order they were submitted."""

    @classmethod
    def of(
        cls, nb: NotebookNode, probes: list[str], limits: Limits, priority: int = 0
    ) -> RunRequest:
        """The request to run `nb`, as plain data (nothing of the NotebookNode is kept)."""
        return cls(json.loads(json.dumps(nb)), tuple(probes), limits, priority)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data, which `from_json` reads back."""
        return {
            "notebook": self.notebook,
            "probes": list(self.probes),
            "limits": dataclasses.asdict(self.limits),
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunRequest:
        """The request `to_json` wrote; ValueError for anything else."""
        try:
            limits = dict(data["limits"])
            resources = ResourceLimits(**limits.pop("resources"))
            request = cls(
                dict(data["notebook"]),
                tuple(data["probes"]),
                Limits(**limits, resources=resources),
                int(data["priority"]),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a run request: {error!r}") from None
        if not all(isinstance(probe, str) for probe in request.probes):
            raise ValueError("not a run request: a probe is not a text")
        return request

    def notebook_node(self) -> NotebookNode:
        import nbformat  # here: a command starts its runner before the grader's heavy imports

        nb: NotebookNode = nbformat.from_dict(self.notebook)
        return nb


class Runner(Protocol):
    """Runs notebooks, wherever it does (see the module's docstring)."""

    @property
    def capacity(self) -> int:
        """How many runs go on at once."""

    def submit(self, request: RunRequest) -> Future[ExecutedNotebook]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...


@dataclass(order=True)
class _Queued:
    rank: tuple[int, int]  # (-priority, submission order): heapq pops the smallest
    request: RunRequest = dataclasses.field(compare=False)
    future: Future[ExecutedNotebook] = dataclasses.field(compare=False)


class LocalRunner:
    """Runs notebooks here, `workers` at once (default: one per core), in warm kernels.

    The zygote that forks the kernels, where the machine allows it, starts as the runner is
    made: a command makes its runner first, so that torch's import there overlaps its own.
    """

    def __init__(self, workers: int | None = None) -> None:
        self._capacity = max(1, workers or os.cpu_count() or 1)
        self._stack = contextlib.ExitStack()
        self._zygote = self._stack.enter_context(start_zygote())
        self._queue: list[_Queued] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._failures: list[BaseException] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, request: RunRequest) -> Future[ExecutedNotebook]:
        """Queue a run; a worker takes it when one is free, the highest priority first."""
        future: Future[ExecutedNotebook] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("the runner is closed")
            rank = (-request.priority, next(self._order))
            heapq.heappush(self._queue, _Queued(rank, request, future))
            if self._idle < len(self._queue) and len(self._workers) < self._capacity:
                self._start_worker()
            self._changed.notify()
        return future

    def close(self) -> None:
        """Cancel the runs not started, wait for those running, stop every kernel."""
        with self._changed:
            self._closed = True
            for queued in self._queue:
                queued.future.cancel()
            self._queue.clear()
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()
        self._stack.close()
        if self._failures:  # a kernel that could not be stopped: said once everything else is
            raise self._failures[0]

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_worker(self) -> None:
        worker = threading.Thread(target=self._work, name=f"grader-{len(self._workers)}")
        self._workers.append(worker)
        worker.start()

    def _work(self) -> None:
        """Take runs until the runner closes; the worker's pool lives as long as it does."""
        from jupyter_core.utils import ensure_event_loop

        from grader.execute import run_notebook

        pool: KernelPool | None = None
        try:
            while (task := self._next()) is not None:
                queued, ahead = task
                if not queued.future.set_running_or_notify_cancel():
                    continue
                pool = self._pool_for(queued.request.limits, pool)
                pool.ahead = ahead
                try:
                    request = queued.request
                    run = run_notebook(
                        request.notebook_node(), list(request.probes), request.limits, pool
                    )
                except BaseException as error:
                    queued.future.set_exception(error)
                else:
                    queued.future.set_result(run)
        finally:
            self._close_pool(pool)
            ensure_event_loop().close()  # the loop jupyter_client made for this thread

    def _next(self) -> tuple[_Queued, int] | None:
        """The next run, and how many kernels to launch ahead for it: one where the queue holds
        a run for every worker still after it, so that this worker surely gets another."""
        with self._changed:
            self._idle += 1
            while not self._queue and not self._closed:
                self._changed.wait()
            self._idle -= 1
            if not self._queue:
                return None
            queued = heapq.heappop(self._queue)
            return queued, int(len(self._queue) >= len(self._workers))

    def _pool_for(self, limits: Limits, pool: KernelPool | None) -> KernelPool:
        """The worker's pool, made anew where a run asks for other kernels than it has."""
        if pool is not None and (pool.resources, pool.threads) == (
            limits.resources,
            limits.threads,
        ):
            return pool
        from grader.pool import KernelPool

        self._close_pool(pool)
        pool = KernelPool(limits.resources, limits.threads, ahead=0, zygote=self._zygote)
        return pool

    def _close_pool(self, pool: KernelPool | None) -> None:
        if pool is None:
            return
        try:
            pool.close()
        except Exception as error:  # the worker's runs are done: `close` raises it
            with self._changed:
                self._failures.append(error)
