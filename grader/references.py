"""Reference runs: the solution notebook run under a variant, cached, and what the checks read
of any run (`collect_executed`).

A reference run is the course's, never the student's: one that fails is a
`ReferenceFailedError`, and only a good run is cached, as `ExecutedNotebook.to_json` writes it.
How a notebook is run is the caller's (`RunNotebook`, e.g. through a `grader.runner.Runner`), so
the same cache serves every way of running notebooks.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from nbformat import NotebookNode

from grader.check import describe_cell_failure
from grader.course import CheckSpec, Exercise
from grader.errors import ReferenceFailedError
from grader.extract import (
    RunData,
    call_request,
    collect_run,
    probe_sources,
    values_request,
)
from grader.prepare import Variant, with_parameters
from grader.runner import ExecutedNotebook

GRADER_VERSION = version("autodiff-grader")
MAX_PROBLEM_CHARS = 300  # of a failed reference's error, in the one-line course error
# In the cache key: a grader that writes another format has entries of its own, so that two
# versions sharing a cache folder do not take each other's entries for broken ones.
CACHE_FORMAT = "ExecutedNotebook.to_json"
_LOCKS: dict[str, threading.Lock] = {}

RunNotebook = Callable[[NotebookNode, list[str]], ExecutedNotebook]
"""Runs a notebook (already given its variant's parameters) with the probes."""


@dataclass(frozen=True)
class Questions:
    """What the checks ask of every run of one variant: the values and the calls, as probes."""

    spec: CheckSpec
    calls: list[Any]
    probes: list[str]


def questions(spec: CheckSpec, variant: Variant) -> Questions:
    calls = _calls(spec, variant)
    requests = [values_request(list(spec.values))] + [call_request(c) for c in calls]
    return Questions(spec, calls, probe_sources(requests))


def _calls(spec: CheckSpec, variant: Variant) -> list[Any]:
    if spec.calls is None:
        return []
    return spec.calls(dict(variant.parameters), np.random.default_rng(variant.input_seed))


@dataclass(frozen=True)
class ReferenceRequest:
    """One reference run to get: the exercise's solution under one variant."""

    exercise: Exercise
    solution: NotebookNode
    variant: Variant
    questions: Questions


def collect_executed(variant: Variant, executed: ExecutedNotebook, questions: Questions) -> RunData:
    """A run decoded into what the checks read."""
    cells = {cell.grade_id: cell for cell in executed.cells}
    payloads = [(probe.payload, probe.failure) for probe in executed.probes]
    values = list(questions.spec.values)
    return collect_run(dict(variant.parameters), cells, payloads, values, questions.calls)


def reference_run(request: ReferenceRequest, cache_dir: Path, run: RunNotebook) -> RunData:
    """The reference solution's run under the request's variant, from the cache or run now.

    Only a good run is cached: one in which every cell ran and every value and call came back.
    A reference that fails is the course's fault, never the student's: ReferenceFailedError.
    """
    executed = reference_executed(request, cache_dir, run)
    return collect_executed(request.variant, executed, request.questions)


def reference_executed(
    request: ReferenceRequest, cache_dir: Path, run: RunNotebook
) -> ExecutedNotebook:
    """The run `reference_run` decodes (what `grader.precomputed` stores)."""
    variant, asked = request.variant, request.questions
    cache = _cache_file(request, cache_dir)
    with _LOCKS.setdefault(cache.stem, threading.Lock()):  # one computes, others wait
        cached = _cached_run(cache)
        if cached is not None and not reference_failure(collect_executed(variant, cached, asked)):
            return cached  # (a bad one is from before bad runs were refused: run again)
        executed = run(with_parameters(request.solution, variant.parameters), asked.probes)
        problem = reference_failure(collect_executed(variant, executed, asked))
        if problem:
            raise ReferenceFailedError(request.exercise.solution_path, variant.label, problem)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(json.dumps(executed.to_json()), encoding="utf-8")
        partial.replace(cache)
    return executed


def _cache_file(request: ReferenceRequest, cache_dir: Path) -> Path:
    """The cache file of one reference run: named after everything the run depends on."""
    key = hashlib.sha256(
        json.dumps(
            [
                request.exercise.solution_path.read_text(encoding="utf-8"),
                request.variant.parameters,
                request.questions.probes,
                version("torch"),
                GRADER_VERSION,
                CACHE_FORMAT,
            ],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    return cache_dir / "references" / f"{key}.json"


def _cached_run(cache: Path) -> ExecutedNotebook | None:
    """The cached run, or None when there is none or it cannot be read (it is run again: a
    file of an older format too)."""
    try:
        return ExecutedNotebook.from_json(json.loads(cache.read_text(encoding="utf-8")))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def reference_failure(reference: RunData) -> str:
    """What failed in a reference run, in one line; "" when nothing did."""
    for gid, cell in reference.cells.items():
        if cell.status != "ok":
            evalue = cell.evalue.splitlines()[0][:MAX_PROBLEM_CHARS] if cell.evalue else ""
            return describe_cell_failure(gid, cell.status, cell.ename, evalue)
    for name, problem in {**reference.problems, **reference.call_problems}.items():
        if problem in ("", "missing"):
            return f"`{name}` is not defined after its last cell"
        return f"`{name}` could not be read: {problem.splitlines()[0][:MAX_PROBLEM_CHARS]}"
    return ""
