"""Figures for the student's feedback, declared in a checks module next to the checks.

A checks module marks a function with `@figure(grade_id, title, xlabel, ylabel)`; it receives
the `student` and `reference` runs of the notebook's own data (the same objects the checks get)
and the parameters, and returns the series to draw::

    @figure("sgd_loop", "SGD: loss per epoch", "epoch", "loss", log_y=True)
    def sgd_losses(student, reference, parameters):
        return [line("you", student.value("sgd_losses")),
                line("reference", reference.value("sgd_losses"), style="dashed")]

The grader calls it after the checks and keeps the numbers (a `Figure`) in the results and the
gradebook; the feedback stage draws them. A figure whose data the student's run lacks is kept
with the reason, so the page can say why the plot is missing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grader.check import CheckFailed, NotebookRun, VariantRuns, describe_cell_failure
from grader.results import Figure, Series

MAX_POINTS = 1000
"""Points kept per series: longer histories are thinned evenly (the ends are kept)."""
FIGURE_ATTRIBUTE = "_grader_figure"

Builder = Callable[[NotebookRun, NotebookRun, dict[str, Any]], list[Series]]


@dataclass(frozen=True)
class FigureSpec:
    """A figure declared in a checks module."""

    grade_id: str
    title: str
    xlabel: str
    ylabel: str
    log_y: bool
    build: Builder


def figure(
    grade_id: str, title: str, xlabel: str, ylabel: str, log_y: bool = False
) -> Callable[[Builder], Builder]:
    """Declare the decorated function as the builder of a figure about TO DO cell `grade_id`."""

    def declare(build: Builder) -> Builder:
        setattr(build, FIGURE_ATTRIBUTE, FigureSpec(grade_id, title, xlabel, ylabel, log_y, build))
        return build

    return declare


def declared_figures(namespace: dict[str, Any]) -> tuple[FigureSpec, ...]:
    """The figures declared in a checks module's namespace, in the order they were defined."""
    found = (getattr(value, FIGURE_ATTRIBUTE, None) for value in namespace.values())
    return tuple(spec for spec in found if isinstance(spec, FigureSpec))


def line(label: str, y: Any, x: Any = None, style: str = "line") -> Series:
    """A series from anything array-like (list, numpy array, tensor); `x` defaults to 0, 1, ..."""
    ys = _floats(y, label)
    xs = _floats(x, label) if x is not None else [float(i) for i in range(len(ys))]
    if len(xs) != len(ys):
        raise CheckFailed(f"{label}: {len(xs)} x values for {len(ys)} y values")
    keep = _thinned(len(ys))
    return Series(label, tuple(xs[i] for i in keep), tuple(ys[i] for i in keep), style)


def points(label: str, x: Any, y: Any) -> Series:
    """A scatter series."""
    return line(label, y, x, style="points")


def draw_figures(specs: tuple[FigureSpec, ...], runs: VariantRuns) -> tuple[Figure, ...]:
    """Build every declared figure from one variant's runs (the notebook's own data)."""
    return tuple(_draw(spec, runs) for spec in specs)


def _draw(spec: FigureSpec, runs: VariantRuns) -> Figure:
    student = NotebookRun(runs.student, spec.grade_id, "student")
    reference = NotebookRun(runs.reference, spec.grade_id, "reference")
    empty = Figure(spec.grade_id, spec.title, spec.xlabel, spec.ylabel, log_y=spec.log_y)
    cell = runs.student.cells.get(spec.grade_id)
    if cell is not None and cell.status != "ok":  # as for the checks: nothing of a failed cell
        why = describe_cell_failure(spec.grade_id, cell.status, cell.ename, cell.evalue)
        return dataclasses.replace(empty, missing=why)
    try:
        series = spec.build(student, reference, dict(runs.student.parameters))
    except CheckFailed as missing:
        return dataclasses.replace(empty, missing=str(missing))
    except Exception as error:  # the student's values can be of any shape and type
        return dataclasses.replace(empty, missing=f"your values could not be plotted ({error})")
    return dataclasses.replace(empty, series=tuple(series))


def _floats(values: Any, label: str) -> list[float]:
    from grader.expect import as_tensor  # imports torch: not at the grader's start

    flat = as_tensor(values, label).reshape(-1).tolist()
    return [v if math.isfinite(v) else math.nan for v in flat]


def _thinned(count: int) -> list[int]:
    if count <= MAX_POINTS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})


def history_lines(
    student: NotebookRun, reference: NotebookRun, name: str, reference_name: str = ""
) -> list[Series]:
    """The student's history `name` (a loss per epoch, say) against the reference's."""
    return [
        line("your run", student.value(name)),
        line("reference solution", reference.value(reference_name or name), style="dashed"),
    ]


def agreement(got: Any, expected: Any, label: str = "your values") -> list[Series]:
    """Points (expected, got) and the diagonal on which they would all lie if they agreed."""
    xs, ys = _floats(expected, "the expected values"), _floats(got, label)
    finite = [v for v in xs if math.isfinite(v)] or [0.0]
    low, high = min(finite), max(finite)
    return [points(label, xs, ys), line("agreement", [low, high], [low, high], style="dashed")]
