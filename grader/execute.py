"""Run a notebook headless in a fresh, confined kernel, cell by cell, within limits.

Each code cell gets its own timeout and the whole run a deadline; outputs are capped per cell.
A cell that times out, runs out of memory or kills the kernel costs only itself: the kernel is
restarted, the cells before it are run again, and the run goes on without it. After the notebook,
the probe cells (see `grader.extract`) run in the same kernel and their payloads are collected.
"""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any

from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_output

from grader.engine.jail import KernelJail
from grader.extract import MAX_PAYLOAD_CHARS, MIME_TYPE, CellOutcome, CellStatus
from grader.notebook import grade_id
from grader.pool import KernelPool, WarmKernel
from grader.runner import ExecutedNotebook, Limits, ProbeOutcome


class _FatalCell(Exception):
    """Cell `index` ended the kernel's usefulness (`timeout`, `died`, `memory`, or an `error`
    the kernel's messages caused)."""

    def __init__(self, index: int, status: CellStatus, detail: str = "", ename: str = "") -> None:
        self.index = index
        self.status = status
        self.detail = detail
        self.ename = ename


REFUSED = "KernelMessageRefused"  # the `ename` of a cell whose kernel sent what the grader refuses


class _RefusedMessages(Exception):
    """The kernel sent, during a cell, a message that `grader.kernel_messages` refuses."""


class _BoundedClient(NotebookClient):
    """An nbclient that keeps at most `output_limit` bytes of output per cell, and ends a cell
    whose kernel sent a message that the client's channels refuse.

    Every message reaches it through `grader.kernel_messages`, which drops display ids and
    refuses comms, so nothing but the cell's outputs grows with what the kernel sends.
    """

    output_limit = 1024 * 1024
    _kept = 0  # bytes of content in the running cell's outputs
    raised: tuple[str, str] | None = None
    """The running cell's error (name, value) as its execute reply says, kept even when the
    error's output was cut by the output limit."""

    async def async_execute_cell(
        self,
        cell: NotebookNode,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> NotebookNode:
        guard = self.kc.guard  # type: ignore[union-attr]  # a `_ReadyClient`, made by the pool
        guard.start_cell()
        self._kept, self.raised = 0, None
        try:
            done: NotebookNode = await super().async_execute_cell(
                cell, cell_index, execution_count, store_history
            )
        except DeadKernelError:
            if guard.refusal:
                raise _RefusedMessages(guard.refusal) from None
            raise
        if guard.refusal:
            raise _RefusedMessages(guard.refusal)
        return done

    execute_cell = run_sync(async_execute_cell)

    async def _check_raise_for_error(
        self, cell: NotebookNode, cell_index: int, exec_reply: dict[str, Any] | None
    ) -> None:
        content = (exec_reply or {}).get("content", {})
        if content.get("status") == "error":
            self.raised = (str(content.get("ename", "")), str(content.get("evalue", "")))
        await super()._check_raise_for_error(cell, cell_index, exec_reply)

    def output(
        self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, index: int
    ) -> NotebookNode | None:
        if self.clear_before_next_output:  # nbclient clears `outs` before it adds this one
            self._kept = 0
        if self._kept > self.output_limit:
            return None
        size = int(msg.get("content_bytes", 0))
        if self._kept + size > self.output_limit:
            note = f"\n[output truncated by the grader: more than {self.output_limit // 1024} KB]\n"
            outs.append(new_output("stream", name="stderr", text=note))
            self._kept = self.output_limit + 1
            return None
        self._kept += size
        result: NotebookNode | None = super().output(outs, msg, display_id, index)
        return result

    def clear_output(self, outs: list[NotebookNode], msg: dict[str, Any], index: int) -> None:
        super().clear_output(outs, msg, index)
        if not outs:
            self._kept = 0


def run_notebook(
    nb: NotebookNode, probes: list[str], limits: Limits, pool: KernelPool | None = None
) -> ExecutedNotebook:
    """Execute every code cell of `nb`, then the `probes`, in a fresh confined kernel.

    Kernels come from `pool` (warm ones, in a batch), or are launched for this run.
    """
    started = time.monotonic()
    deadline = started + limits.notebook_timeout
    skipped: dict[int, _FatalCell] = {}
    work = copy.deepcopy(nb)
    notebook_cells = len(work.cells)
    work.cells.extend(new_code_cell(source) for source in probes)
    with contextlib.ExitStack() as stack:
        kernels = pool or stack.enter_context(KernelPool(limits.resources, limits.threads, 0))
        while True:
            kernel = kernels.take()
            isolation = kernel.jail.isolation.description
            try:
                cells, probe_outcomes = _attempt(
                    work, notebook_cells, kernel, limits, deadline, skipped
                )
                break
            except _FatalCell as fatal:
                skipped[fatal.index] = fatal
            finally:
                kernels.discard(kernel)
    seconds = time.monotonic() - started
    return ExecutedNotebook(tuple(cells), tuple(probe_outcomes), seconds, isolation)


def _attempt(
    nb: NotebookNode,
    notebook_cells: int,
    kernel: WarmKernel,
    limits: Limits,
    deadline: float,
    skipped: dict[int, _FatalCell],
) -> tuple[list[CellOutcome], list[ProbeOutcome]]:
    client = _client(nb, kernel, limits)
    outcomes: list[CellOutcome] = []
    # cleanup_kc: nbclient leaves a kernel it did not create running unless told otherwise.
    with client.setup_kernel(cleanup_kc=True):
        for index, cell in enumerate(nb.cells[:notebook_cells]):
            if cell.cell_type != "code":
                continue
            outcomes.append(
                _cell_outcome(client, kernel.jail, cell, index, limits, deadline, skipped)
            )
        client.output_limit = MAX_PAYLOAD_CHARS + 1024
        probe_outcomes = [
            _run_probe(client, index, limits.probe_timeout)
            for index in range(notebook_cells, len(nb.cells))
        ]
    return outcomes, probe_outcomes


def _client(nb: NotebookNode, kernel: WarmKernel, limits: Limits) -> _BoundedClient:
    client = _BoundedClient(
        nb,
        km=kernel.manager,
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        startup_timeout=60,
        resources={"metadata": {"path": str(kernel.jail.directory)}},
        record_timing=False,  # it reads the headers' dates, which the grader does not decode
        store_widget_state=False,
    )
    client.output_limit = limits.output_kb * 1024
    return client


def _cell_outcome(
    client: _BoundedClient,
    jail: KernelJail,
    cell: NotebookNode,
    index: int,
    limits: Limits,
    deadline: float,
    skipped: dict[int, _FatalCell],
) -> CellOutcome:
    gid = grade_id(cell) or f"#{index}"
    if index in skipped:
        fatal = skipped[index]
        return CellOutcome(gid, fatal.status, fatal.ename, fatal.detail)
    if time.monotonic() >= deadline:
        return CellOutcome(gid, "skipped", evalue="the notebook ran out of time")
    client.timeout = max(1, int(min(limits.cell_timeout, deadline - time.monotonic()) + 0.999))
    try:
        client.execute_cell(cell, index)
    except CellTimeoutError:
        raise _FatalCell(index, "timeout", f"{client.timeout} s") from None
    except DeadKernelError:
        raise _FatalCell(index, "memory" if jail.ran_out_of_memory() else "died") from None
    except _RefusedMessages as refused:  # the kernel goes on sending: a fresh one runs on
        raise _FatalCell(index, "error", str(refused), REFUSED) from None
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return CellOutcome(gid, "error", str(output.get("ename")), str(output.get("evalue")))
    if client.raised is not None:  # its error output was past the output limit
        return CellOutcome(gid, "error", *client.raised)
    return CellOutcome(gid, "ok")


def _run_probe(client: NotebookClient, index: int, timeout: float) -> ProbeOutcome:
    cell = client.nb.cells[index]
    client.timeout = max(1, int(timeout))
    try:
        client.execute_cell(cell, index, store_history=False)
    except CellTimeoutError:
        return ProbeOutcome(None, f"did not finish within {timeout:g} s")
    except DeadKernelError:
        return ProbeOutcome(None, "the kernel died")
    except _RefusedMessages as refused:
        return ProbeOutcome(None, str(refused))
    errors = [output for output in cell.outputs if output.get("output_type") == "error"]
    if errors:
        return ProbeOutcome(None, f"{errors[0].get('ename')}: {errors[0].get('evalue')}")
    payloads = [
        output["data"][MIME_TYPE]
        for output in cell.outputs
        if output.get("output_type") == "display_data" and MIME_TYPE in output.get("data", {})
    ]
    if len(payloads) != 1 or not isinstance(payloads[0], str):
        return ProbeOutcome(None, "the notebook's values could not be read")
    return ProbeOutcome(payloads[0])
