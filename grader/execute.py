"""Run a notebook headless in a fresh kernel, cell by cell, within time limits.

Each code cell gets its own timeout and the whole run a deadline. A cell that times out or kills
the kernel costs only itself: the kernel is restarted, the cells before it are run again, and the
run goes on without it. After the notebook, the probe cells (see `grader.extract`) run in the same
kernel and their payloads are collected.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from grader.extract import MIME_TYPE
from grader.notebook import grade_id

KERNEL_NAME = "grader-python"


@dataclass(frozen=True)
class Limits:
    """Time limits of one notebook run, in seconds."""

    cell_timeout: float = 60.0
    notebook_timeout: float = 300.0
    probe_timeout: float = 10.0


@dataclass(frozen=True)
class CellOutcome:
    """How one code cell ended: `ok`, `error`, `timeout`, `died` or `skipped`."""

    grade_id: str
    status: str
    ename: str = ""
    evalue: str = ""


@dataclass(frozen=True)
class ProbeOutcome:
    """The payload text of one probe cell, or why there is none."""

    payload: str | None
    failure: str = ""


@dataclass(frozen=True)
class ExecutedNotebook:
    """What one run produced: an outcome per code cell and per probe."""

    cells: tuple[CellOutcome, ...]
    probes: tuple[ProbeOutcome, ...]
    seconds: float
    outputs: dict[str, list[Any]] = field(default_factory=dict)


class _FatalCell(Exception):
    """Cell `index` ended the kernel's usefulness (`timeout` or `died`)."""

    def __init__(self, index: int, status: str) -> None:
        self.index = index
        self.status = status


class _GraderKernelSpecs(KernelSpecManager):
    """Always the current interpreter's ipykernel, whatever kernelspecs are installed."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="grader",
            language="python",
        )


def run_notebook(nb: NotebookNode, probes: list[str], limits: Limits) -> ExecutedNotebook:
    """Execute every code cell of `nb`, then the `probes`, in a fresh kernel."""
    started = time.monotonic()
    deadline = started + limits.notebook_timeout
    skipped: dict[int, str] = {}
    work = copy.deepcopy(nb)
    notebook_cells = len(work.cells)
    work.cells.extend(new_code_cell(source) for source in probes)
    with tempfile.TemporaryDirectory(prefix="grader-run-") as workdir:
        while True:
            try:
                cells, probe_outcomes = _attempt(
                    work, notebook_cells, limits, deadline, skipped, workdir
                )
                break
            except _FatalCell as fatal:
                skipped[fatal.index] = fatal.status
    outputs = {
        gid: list(cell.get("outputs", []))
        for cell in work.cells[:notebook_cells]
        if (gid := grade_id(cell))
    }
    seconds = time.monotonic() - started
    return ExecutedNotebook(tuple(cells), tuple(probe_outcomes), seconds, outputs)


def _attempt(
    nb: NotebookNode,
    notebook_cells: int,
    limits: Limits,
    deadline: float,
    skipped: dict[int, str],
    workdir: str,
) -> tuple[list[CellOutcome], list[ProbeOutcome]]:
    client = _client(nb, workdir)
    outcomes: list[CellOutcome] = []
    # cleanup_kc: nbclient leaves a kernel it did not create running unless told otherwise.
    with client.setup_kernel(
        cleanup_kc=True,
        env=_kernel_environment(workdir),
        cwd=workdir,
        stdout=DEVNULL,
        stderr=DEVNULL,
    ):
        for index, cell in enumerate(nb.cells[:notebook_cells]):
            if cell.cell_type != "code":
                continue
            gid = grade_id(cell) or f"#{index}"
            if index in skipped:
                outcomes.append(CellOutcome(gid, skipped[index]))
                continue
            if time.monotonic() >= deadline:
                outcomes.append(CellOutcome(gid, "skipped", evalue="the notebook ran out of time"))
                continue
            outcomes.append(_run_cell(client, cell, index, limits.cell_timeout, deadline))
        probe_outcomes = [
            _run_probe(client, index, limits.probe_timeout)
            for index in range(notebook_cells, len(nb.cells))
        ]
    return outcomes, probe_outcomes


def _client(nb: NotebookNode, workdir: str) -> NotebookClient:
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_GraderKernelSpecs())
    return NotebookClient(
        nb,
        km=manager,
        allow_errors=True,
        interrupt_on_timeout=False,
        shutdown_kernel="immediate",
        startup_timeout=60,
        extra_arguments=["--HistoryManager.enabled=False"],
        resources={"metadata": {"path": workdir}},
    )


def _run_cell(
    client: NotebookClient, cell: NotebookNode, index: int, timeout: float, deadline: float
) -> CellOutcome:
    gid = grade_id(cell) or f"#{index}"
    client.timeout = max(1, int(min(timeout, deadline - time.monotonic()) + 0.999))
    try:
        client.execute_cell(cell, index)
    except CellTimeoutError:
        raise _FatalCell(index, "timeout") from None
    except DeadKernelError:
        raise _FatalCell(index, "died") from None
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return CellOutcome(gid, "error", str(output.get("ename")), str(output.get("evalue")))
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
    payloads = [
        output["data"][MIME_TYPE]
        for output in cell.outputs
        if output.get("output_type") == "display_data" and MIME_TYPE in output.get("data", {})
    ]
    errors = [output for output in cell.outputs if output.get("output_type") == "error"]
    if errors:
        return ProbeOutcome(None, f"{errors[0].get('ename')}: {errors[0].get('evalue')}")
    if len(payloads) != 1 or not isinstance(payloads[0], str):
        return ProbeOutcome(None, "the notebook's values could not be read")
    return ProbeOutcome(payloads[0])


def _kernel_environment(workdir: str) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        MPLBACKEND="agg",
        IPYTHONDIR=str(Path(workdir) / ".ipython"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return environment
