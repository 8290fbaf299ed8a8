"""The pipeline, end to end: prepare -> execute -> extract -> check, for each notebook."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from jupyter_core.utils import ensure_event_loop
from nbformat import NotebookNode

from grader.check import VariantRuns, run_checks
from grader.config import Config
from grader.course import CheckSpec, Exercise, exercise_for, find_exercises, load_check_spec
from grader.errors import ConfigError, DeviceError, GraderError, UnknownNotebookError
from grader.execute import ExecutedNotebook, Limits, run_notebook
from grader.extract import (
    CellStatus,
    RunData,
    call_request,
    collect_run,
    probe_sources,
    values_request,
)
from grader.figures import draw_figures
from grader.notebook import grade_id, is_todo, read_course_notebook
from grader.pool import KernelPool
from grader.prepare import (
    PreparedNotebook,
    Variant,
    prepare_submission,
    variants,
    with_parameters,
)
from grader.results import Answer, NotebookResult
from grader.sandbox import ResourceLimits, detect_isolation
from grader.zygote import Zygote

GRADER_VERSION = version("autodiff-grader")
_REFERENCE_LOCKS: dict[str, threading.Lock] = {}
_REPORTING_LOCK = threading.Lock()
MAX_ANSWER_CHARS = 20_000


@dataclass(frozen=True)
class _Course:
    """What grading one exercise needs, read once."""

    exercise: Exercise
    pristine: NotebookNode
    solution: NotebookNode
    spec: CheckSpec


@dataclass(frozen=True)
class _Session:
    """What every notebook of one grading run shares."""

    config: Config
    device: str
    limits: Limits
    pool: KernelPool


@dataclass(frozen=True)
class Job:
    """One notebook to grade: its file, the exercise it claims to be, and why it cannot be run
    (set when the submission could not even be collected, e.g. an unsafe archive entry)."""

    path: Path
    exercise: str
    problem: str = ""


def check_notebooks(
    paths: list[Path],
    config: Config,
    workers: int | None = None,
    on_result: Callable[[NotebookResult], None] | None = None,
) -> list[NotebookResult]:
    """Grade each notebook in `paths` (folders are searched for `*.ipynb`), in order.

    A notebook is matched to the exercise of the same name. `workers` notebooks are graded at
    once (default: one per core), each worker with its own pool of warm kernels; `on_result` is
    called with each result as soon as it is ready.
    """
    jobs = [Job(path, path.stem) for path in expand_paths(paths)]
    report = None if on_result is None else (lambda _index, result: on_result(result))
    return grade_jobs(jobs, config, workers, report)


def grade_jobs(
    jobs: list[Job],
    config: Config,
    workers: int | None = None,
    on_result: Callable[[int, NotebookResult], None] | None = None,
) -> list[NotebookResult]:
    """Grade `jobs` in parallel; `on_result(index, result)` is called as each one is ready.

    On Ctrl-C (or a grader error) no new job is started; the notebooks in progress finish and
    are reported before the exception goes on.
    """
    results: dict[int, NotebookResult] = {}

    def report(index: int, result: NotebookResult) -> None:
        with _REPORTING_LOCK:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

    exercises = find_exercises(config)
    runnable = sum(1 for job in jobs if not job.problem and job.exercise in exercises)
    count = min(workers or os.cpu_count() or 1, runnable)  # no kernel for what cannot run
    limits = execution_limits(config, max(count, 1))
    # One zygote for all workers, importing torch while the checks modules are loaded here.
    zygote = Zygote(limits.threads) if count and detect_isolation().forked else None
    pools = [KernelPool(limits.resources, limits.threads, zygote=zygote) for _ in range(count)]
    try:
        pending: deque[tuple[int, Job, _Course]] = deque()
        for index, (job, course) in enumerate(_match(jobs, exercises)):
            if isinstance(course, GraderError):  # nothing to run: reported at once
                report(index, NotebookResult(job.exercise, str(job.path), (), error=str(course)))
            else:
                pending.append((index, job, course))
        if pools:
            _run_workers(pending, pools, config, limits, report)
    finally:
        if zygote is not None:
            zygote.close()  # each worker closed its own pool
    return [results[index] for index in sorted(results)]


def _run_workers(
    pending: deque[tuple[int, Job, _Course]],
    pools: list[KernelPool],
    config: Config,
    limits: Limits,
    report: Callable[[int, NotebookResult], None],
) -> None:
    """Grade the pending notebooks on a thread per pool; each thread closes its pool."""
    stop = threading.Event()

    def work(pool: KernelPool) -> None:
        try:
            with pool:
                pool.prime()  # the first kernel warms while torch is imported here
                session = _Session(config, resolve_device(config.device), limits, pool)
                while not stop.is_set():
                    try:
                        index, job, course = pending.popleft()
                    except IndexError:
                        return
                    report(index, grade_notebook(job.path, course, session))
        finally:
            ensure_event_loop().close()  # the loop jupyter_client made for this thread

    with ThreadPoolExecutor(max_workers=len(pools), thread_name_prefix="grader") as executor:
        futures = [executor.submit(work, pool) for pool in pools]
        try:
            for future in futures:
                future.result()
        except BaseException:
            stop.set()  # Ctrl-C or a grader error: finish the notebooks in progress, start none
            raise


def _match(
    jobs: list[Job], exercises: dict[str, Exercise]
) -> list[tuple[Job, _Course | GraderError]]:
    """Each job with its exercise, loaded once per exercise, or why it has none."""
    courses: dict[str, _Course] = {}
    planned: list[tuple[Job, _Course | GraderError]] = []
    for job in jobs:
        if job.problem:
            planned.append((job, GraderError(f"{job.path.name}: {job.problem}")))
            continue
        try:
            exercise = exercise_for(job.path, job.exercise, exercises)
        except UnknownNotebookError as error:
            planned.append((job, error))
            continue
        if exercise.name not in courses:
            courses[exercise.name] = _load_course(exercise)
        planned.append((job, courses[exercise.name]))
    return planned


def expand_paths(paths: list[Path]) -> list[Path]:
    """The notebooks named by `paths`: files as given, folders by their `*.ipynb` files."""
    notebooks: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.ipynb"))
            if not found:
                raise GraderError(f"{path}: the folder has no .ipynb notebooks")
            notebooks.extend(found)
        elif path.is_file():
            notebooks.append(path)
        else:
            raise GraderError(f"{path}: no such file or folder")
    return notebooks


@functools.cache
def resolve_device(requested: str) -> str:
    """`cpu` or `cuda`, from `cpu`, `cuda` or `auto`."""
    import torch  # imported late: the grader's start overlaps the first kernel's

    if requested not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"device must be cpu, cuda or auto, not {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA device here")
    return requested


def _load_course(exercise: Exercise) -> _Course:
    return _Course(
        exercise,
        read_course_notebook(exercise.exercise_path),
        read_course_notebook(exercise.solution_path),
        load_check_spec(exercise),
    )


def grade_notebook(path: Path, course: _Course, session: _Session) -> NotebookResult:
    """Grade one submitted notebook against its exercise."""
    started = time.monotonic()
    name = course.exercise.name
    prepared = prepare_submission(path, course.pristine)
    plan = variants(course.pristine, name, course.spec, session.device, session.config.hidden_seed)
    runs = [_variant_runs(prepared, course, variant, session) for variant in plan]
    checks = run_checks(name, course.exercise.checks_path, runs)
    return NotebookResult(
        notebook=name,
        path=str(path),
        checks=tuple(checks),
        notices=prepared.notices,
        seconds=time.monotonic() - started,
        device=session.device,
        isolation=detect_isolation().description,
        seeds=tuple(int(v.parameters.get("seed", 0)) for v in plan),
        answers=() if prepared.unreadable else todo_answers(prepared.notebook),
        figures=draw_figures(course.spec.figures, runs[0]),
    )


def todo_answers(nb: NotebookNode) -> tuple[Answer, ...]:
    """The code of every TO DO cell of a prepared notebook (long cells are cut)."""
    answers = []
    for cell in nb.cells:
        gid = grade_id(cell)
        if is_todo(cell) and gid:
            source = str(cell.source)
            if len(source) > MAX_ANSWER_CHARS:
                source = source[:MAX_ANSWER_CHARS] + "\n# ... (cut: the cell is too long to show)"
            answers.append(Answer(gid, source))
    return tuple(answers)


def _variant_runs(
    prepared: PreparedNotebook, course: _Course, variant: Variant, session: _Session
) -> VariantRuns:
    """The student's and the reference's runs under one variant, decoded."""
    calls = _calls(course.spec, variant)
    requests = [values_request(list(course.spec.values))] + [call_request(c) for c in calls]
    probes = probe_sources(requests)
    if prepared.unreadable:
        student = _unrun(variant, prepared.notebook, prepared.unreadable)
    else:
        nb = with_parameters(prepared.notebook, variant.parameters)
        executed = run_notebook(nb, probes, session.limits, session.pool)
        student = _collect(variant, executed_record(executed), course.spec, calls)
    record = _reference_record(course, variant, probes, session)
    return VariantRuns(variant.label, student, _collect(variant, record, course.spec, calls))


def execution_limits(config: Config, workers: int = 1) -> Limits:
    """The limits of every notebook run, from the configuration.

    Each kernel gets an equal share of the cores for torch's intra-op threads, so that parallel
    workers do not oversubscribe the machine.
    """
    resources = ResourceLimits(memory_mb=config.memory_limit_mb, processes=config.process_limit)
    return Limits(
        cell_timeout=config.cell_timeout,
        notebook_timeout=config.notebook_timeout,
        output_kb=config.output_limit_kb,
        resources=resources,
        threads=max(1, (os.cpu_count() or 1) // workers),
    )


def _calls(spec: CheckSpec, variant: Variant) -> list[Any]:
    if spec.calls is None:
        return []
    return spec.calls(dict(variant.parameters), np.random.default_rng(variant.input_seed))


def executed_record(executed: ExecutedNotebook) -> dict[str, Any]:
    """The JSON-ready part of a run that the checks need (and the reference cache keeps)."""
    return {
        "cells": {c.grade_id: [c.status, c.ename, c.evalue] for c in executed.cells},
        "payloads": [[p.payload, p.failure] for p in executed.probes],
    }


def _collect(
    variant: Variant, record: dict[str, Any], spec: CheckSpec, calls: list[Any]
) -> RunData:
    cells = {gid: CellStatus(*fields) for gid, fields in record["cells"].items()}
    payloads = [(text, failure) for text, failure in record["payloads"]]
    return collect_run(dict(variant.parameters), cells, payloads, list(spec.values), calls)


def _unrun(variant: Variant, nb: NotebookNode, reason: str) -> RunData:
    """The run of a notebook that could not be read: every TO DO cell says why."""
    cells = {
        gid: CellStatus("skipped", evalue=f"your notebook could not be read: {reason}")
        for cell in nb.cells
        if is_todo(cell) and (gid := grade_id(cell))
    }
    return collect_run(dict(variant.parameters), cells, [(None, reason)], [], [])


def _reference_record(
    course: _Course, variant: Variant, probes: list[str], session: _Session
) -> dict[str, Any]:
    key = hashlib.sha256(
        json.dumps(
            [
                course.exercise.solution_path.read_text(encoding="utf-8"),
                variant.parameters,
                probes,
                version("torch"),
                GRADER_VERSION,
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    cache = session.config.path(session.config.cache_dir) / "references" / f"{key}.json"
    with _REFERENCE_LOCKS.setdefault(key, threading.Lock()):  # one worker computes, others wait
        if cache.is_file():
            record: dict[str, Any] = json.loads(cache.read_text(encoding="utf-8"))
            return record
        nb = with_parameters(course.solution, variant.parameters)
        record = executed_record(run_notebook(nb, probes, session.limits, session.pool))
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(json.dumps(record), encoding="utf-8")
        partial.replace(cache)
    return record
