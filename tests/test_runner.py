"""The runner seam: plain-data requests and results, the local runner's order, stopping a batch."""

from __future__ import annotations

import contextlib
import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import grader.execute
import grader.pool
import grader.runner
from grader.config import Config
from grader.engine.limits import ResourceLimits
from grader.errors import KernelStartError
from grader.extract import CellOutcome
from grader.grading import check_notebooks
from grader.references import _cached_run
from grader.runner import ExecutedNotebook, Limits, LocalRunner, ProbeOutcome, RunRequest
from tests.conftest import make_cell, make_notebook, submission

HOSTILE_TEXT = "a\x00b\udc80\u202e\n" + "x" * 1000  # NUL, a lone surrogate, bidi control


def request(priority: int = 0, source: str = "answer = 1") -> RunRequest:
    nb = make_notebook([make_cell(source, "first", todo=True)])
    limits = Limits(cell_timeout=3.5, resources=ResourceLimits(memory_mb=512), threads=2)
    return RunRequest.of(nb, ["probe()", HOSTILE_TEXT], limits, priority)


def executed(isolation: str = "bubblewrap") -> ExecutedNotebook:
    cells = (CellOutcome("first", "error", "ValueError", HOSTILE_TEXT), CellOutcome("#1", "ok"))
    return ExecutedNotebook(
        cells, (ProbeOutcome(HOSTILE_TEXT), ProbeOutcome(None, "x")), 1.5, isolation
    )


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def test_requests_and_runs_round_trip_through_plain_json() -> None:
    sent = request(priority=2)
    assert RunRequest.from_json(through_json(sent.to_json())) == sent
    assert RunRequest.from_json(through_json(sent.to_json())).notebook_node().cells[0].source == (
        "answer = 1"
    )
    assert ExecutedNotebook.from_json(through_json(executed().to_json())) == executed()


def with_cell(**fields: Any) -> dict[str, Any]:
    """A good run's JSON whose first cell has `fields` instead."""
    good = executed().to_json()
    return {**good, "cells": [{**good["cells"][0], **fields}]}


MALFORMED_RUNS = {
    "not an object": [],
    "the old cache format": {"cells": {"first": ["ok", "", ""]}, "payloads": [[None, "x"]]},
    "unknown status": with_cell(status="fine"),
    "a number for a text": with_cell(evalue=3),
    "a list for a status": with_cell(status=["ok"]),
    "a list for a payload": {**executed().to_json(), "probes": [{"payload": ["x"], "failure": ""}]},
    "no isolation": {k: v for k, v in executed().to_json().items() if k != "isolation"},
    "seconds past a float": {**executed().to_json(), "seconds": 10**400},
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED_RUNS))
def test_a_malformed_run_is_refused(case: str) -> None:
    with pytest.raises(ValueError, match="not a"):
        ExecutedNotebook.from_json(MALFORMED_RUNS[case])


def test_a_reference_cached_in_the_old_format_is_run_again(tmp_path: Path) -> None:
    cache = tmp_path / "reference.json"
    cache.write_text(json.dumps(MALFORMED_RUNS["the old cache format"]), encoding="utf-8")
    assert _cached_run(cache) is None
    cache.write_text(json.dumps(executed().to_json()), encoding="utf-8")
    assert _cached_run(cache) == executed()


class _FakePool:
    def __init__(self, resources: ResourceLimits, threads: int, **_: Any) -> None:
        self.resources, self.threads, self.ahead = resources, threads, 0

    def close(self) -> None:
        pass


@dataclass
class FakeKernels:
    """What the runs without kernels did: (first cell, kernels launched ahead) per run."""

    ran: list[tuple[str, int]] = field(default_factory=list)
    blocking: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def fake_kernels(monkeypatch: pytest.MonkeyPatch) -> FakeKernels:
    """Runs without kernels, each done at once, unless its cell says `block` (it waits for
    `release`) or `fail` (its kernel does not start)."""
    fake = FakeKernels()

    def run_notebook(nb: Any, probes: list[str], limits: Limits, pool: Any) -> ExecutedNotebook:
        source = nb.cells[0].source
        fake.ran.append((source, pool.ahead))
        if source == "block":
            fake.blocking.set()
            assert fake.release.wait(timeout=30)
        if source == "fail":
            raise KernelStartError("died as it started")
        return executed()

    monkeypatch.setattr(grader.runner, "start_zygote", contextlib.nullcontext)
    monkeypatch.setattr(grader.pool, "KernelPool", _FakePool)
    monkeypatch.setattr(grader.execute, "run_notebook", run_notebook)
    return fake


def test_the_local_runner_runs_higher_priorities_first_and_launches_ahead_for_a_backlog(
    fake_kernels: FakeKernels,
) -> None:
    with LocalRunner(1) as runner:
        first = runner.submit(request(source="block"))
        assert fake_kernels.blocking.wait(timeout=30)
        later = [runner.submit(request(p, f"run {p}")) for p in (0, 0, 1, 2)]
        fake_kernels.release.set()
        assert [future.result().isolation for future in later] == ["bubblewrap"] * 4
    assert first.done()
    # `block` found nothing queued; then the highest first, in submission order within one,
    # each with a kernel launched ahead while another run waits for the one worker.
    ran = fake_kernels.ran
    assert ran == [("block", 0), ("run 2", 1), ("run 1", 1), ("run 0", 1), ("run 0", 0)]


def test_closing_the_local_runner_cancels_what_has_not_started(fake_kernels: FakeKernels) -> None:
    runner = LocalRunner(1)
    running = runner.submit(request(source="block"))
    assert fake_kernels.blocking.wait(timeout=30)
    queued = runner.submit(request(source="never"))
    threading.Timer(0.5, fake_kernels.release.set).start()
    runner.close()
    assert running.result().isolation == "bubblewrap" and queued.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(request())


def test_a_kernel_that_cannot_start_fails_its_run_not_the_worker(fake_kernels: FakeKernels) -> None:
    with LocalRunner(1) as runner:
        failed = runner.submit(request(source="fail"))
        after = runner.submit(request())
        with pytest.raises(KernelStartError):
            failed.result()
        assert after.result() == executed()


class _FailingRunner:
    """A runner of two slots on which no kernel starts; it counts the runs it was given."""

    capacity = 2

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, request: RunRequest) -> Future[ExecutedNotebook]:
        self.submitted += 1
        future: Future[ExecutedNotebook] = Future()
        future.set_exception(KernelStartError("died as it started"))
        return future

    def close(self) -> None:
        pass

    def __enter__(self) -> _FailingRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_grader_error_in_a_run_stops_the_batch_without_draining_it(
    mini_course: Config, tmp_path: Path
) -> None:
    paths = [submission(tmp_path / f"s{i}", "answer = 42") for i in range(20)]
    runner = _FailingRunner()
    reported: list[object] = []
    with pytest.raises(KernelStartError, match="died as it started"):
        check_notebooks(paths, mini_course, on_result=reported.append, runner=runner)
    assert reported == []
    # Only the notebooks in progress (one per slot and one more) asked for runs: their own two
    # and, each in turn, the reference's two (which they look up together).
    assert runner.submitted <= 4 * (runner.capacity + 1)
