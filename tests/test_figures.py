"""Figures declared in checks modules: plain data, thinned, or the reason they cannot be drawn."""

from __future__ import annotations

import math

import numpy as np
import torch

from grader.check import VariantRuns
from grader.extract import CellOutcome, RunData
from grader.figures import (
    MAX_POINTS,
    agreement,
    declared_figures,
    draw_figures,
    figure,
    history_lines,
    line,
)


def run(values: dict, cells: dict | None = None) -> RunData:
    return RunData(
        parameters={"seed": 0},
        cells=cells or {},
        values=values,
        problems={},
        calls={},
        call_problems={},
    )


@figure("training", "Loss per epoch", "epoch", "loss", log_y=True)
def losses(student, reference, parameters):
    return history_lines(student, reference, "losses")


@figure("training", "Broken", "x", "y")
def broken(student, reference, parameters):
    return [line("ragged", [1.0, 2.0], x=[1.0])]


def test_series_accept_tensors_arrays_and_lists_and_keep_gaps() -> None:
    series = line("loss", torch.tensor([3.0, float("nan"), float("inf"), 1.0]))
    assert series.x == (0.0, 1.0, 2.0, 3.0)
    assert series.y[0] == 3.0 and math.isnan(series.y[1]) and math.isnan(series.y[2])
    assert line("a", np.arange(3.0), x=[10, 20, 30]).x == (10.0, 20.0, 30.0)


def test_long_series_are_thinned_keeping_both_ends() -> None:
    series = line("loss", list(range(100_000)))
    assert len(series.y) == MAX_POINTS
    assert (series.y[0], series.y[-1]) == (0.0, 99_999.0)


def test_agreement_draws_the_diagonal_over_the_expected_range() -> None:
    got, diagonal = agreement([1.0, 2.1], [1.0, 2.0])
    assert (got.x, got.y, got.style) == ((1.0, 2.0), (1.0, 2.1), "points")
    assert diagonal.x == diagonal.y == (1.0, 2.0)


def test_figures_are_declared_in_definition_order() -> None:
    specs = declared_figures({"losses": losses, "other": 42, "broken": broken})
    assert [spec.title for spec in specs] == ["Loss per epoch", "Broken"]


def test_a_figure_is_drawn_or_says_why_not() -> None:
    specs = declared_figures({"losses": losses, "broken": broken})
    done = VariantRuns("own", run({"losses": [3.0, 2.0]}), run({"losses": [3.0, 1.5]}))
    drawn, ragged = draw_figures(specs, done)
    assert [s.y for s in drawn.series] == [(3.0, 2.0), (3.0, 1.5)]
    assert drawn.log_y and drawn.missing == ""
    assert ragged.series == () and "1 x values for 2 y values" in ragged.missing
    failed = run(
        {}, cells={"training": CellOutcome("training", "error", "ValueError", "bad shape")}
    )
    (missing, _) = draw_figures(specs, VariantRuns("own", failed, run({"losses": [1.0]})))
    assert missing.missing == "cell `training` raised ValueError: bad shape"
