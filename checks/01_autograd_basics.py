"""Checks for 01_autograd_basics: gradient descent on a parabola, and fitting a parabola."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from grader.expect import (
    CheckFailed,
    as_float_list,
    as_tensor,
    assert_close,
    assert_history_follows_reference,
    assert_same_history,
    tolerance,
)
from grader.figures import figure, history_lines, line, points

VALUES = [
    "x_start", "learning_rate", "x_final", "x_log", "y_log", "params", "error_log",
    "x", "y_noisy",
]  # fmt: skip

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. parabola_descent and curve_fit share nothing (curve_fit has its own data and loop).
DEPENDS_ON: dict[str, dict[str, str]] = {}


def hidden_parameters(parameters: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "parabola": [
            round(float(rng.uniform(1, 5)), 2),
            round(float(rng.uniform(-3, 3)), 2),
            round(float(rng.uniform(-2, 2)), 2),
        ],
        "true_coeffs": [
            round(float(rng.uniform(0.3, 0.8) * rng.choice([-1, 1])), 2),
            round(float(rng.uniform(-1.5, 1.5)), 2),
            round(float(rng.uniform(-1, 1)), 2),
        ],
    }


def _path(run) -> tuple[list[float], list[float]]:
    x_log = as_float_list(run.value("x_log"), "x_log")
    y_log = as_float_list(run.value("y_log"), "y_log")
    if len(x_log) != len(y_log):
        raise CheckFailed(f"`x_log` has {len(x_log)} entries but `y_log` has {len(y_log)}")
    if len(x_log) < 2:
        raise CheckFailed("`x_log` should hold one entry per step of the descent")
    return x_log, y_log


@pytest.mark.grade("parabola_descent", points=2)
def test_descent_path_matches_reference(student, reference, device):
    rtol, atol = tolerance(device)
    x_log, y_log = _path(student)
    expected_x, expected_y = _path(reference)
    assert_same_history(y_log, expected_y, "`y_log`", rtol=10 * rtol, atol=10 * atol)
    assert_close(torch.tensor(x_log), torch.tensor(expected_x), "`x_log`", rtol=10 * rtol,
                 atol=10 * atol, where="(gradient descent from x_start)")  # fmt: skip


@pytest.mark.grade("parabola_descent", points=1)
def test_descent_takes_real_steps_to_the_minimum(student, reference, parameters):
    a, b, c = parameters["parabola"]
    x_log, y_log = _path(student)
    x0 = float(as_tensor(reference.value("x_start"), "x_start", (1,))[0])
    rate = float(reference.value("learning_rate"))
    first = x0 - rate * (2 * a * x0 + b)
    if abs(x_log[0] - first) > 1e-4 * max(1.0, abs(first)):
        raise CheckFailed(
            f"the first step should go from x_start = {x0:.5g} to {first:.5g} "
            f"(x - learning_rate * f'(x)), but x_log[0] is {x_log[0]:.5g}"
        )
    for step, (x, y) in enumerate(zip([x0, *x_log[:-1]], y_log, strict=True)):
        if abs(y - (a * x**2 + b * x + c)) > 1e-3 * max(1.0, abs(y)):
            raise CheckFailed(f"y_log[{step}] = {y:.5g} is not f(x) where the gradient was taken")
    x_final = float(as_tensor(student.value("x_final"), "x_final").reshape(-1)[0])
    minimum = -b / (2 * a)
    if abs(x_final - minimum) > 1e-3 or abs(x_final - x_log[-1]) > 1e-6:
        raise CheckFailed(
            f"`x_final` is {x_final:.5g}: it should be the last point of the descent, "
            f"close to the minimum at x = {minimum:.5g}"
        )


@pytest.mark.grade("curve_fit", points=2)
def test_fit_matches_reference(student, reference, device):
    rtol, atol = tolerance(device)
    assert_history_follows_reference(
        student, reference, "error_log", rtol=100 * rtol, atol=100 * atol
    )
    got = as_tensor(student.value("params"), "params", (3,))
    expected_params = as_tensor(reference.value("params"), "params", (3,))
    assert_close(got, expected_params, "`params`", rtol=100 * rtol, atol=100 * atol,
                 where="(gradient descent from params_init)")  # fmt: skip


@pytest.mark.grade("curve_fit", points=1)
def test_fit_beats_the_initial_guess(student, reference):
    errors = as_float_list(student.value("error_log"), "error_log")
    expected = as_float_list(reference.value("error_log"), "error_log")
    if len(errors) < 2 or not np.isfinite(errors[-1]) or errors[-1] > 1.05 * expected[-1]:
        last = errors[-1] if errors else float("nan")
        raise CheckFailed(
            f"the fit's error ends at {last:.5g}; the reference reaches {expected[-1]:.5g} "
            f"from the same start (it was {expected[0]:.5g} at the start)"
        )


def _parabola(coefficients: list[float], x: torch.Tensor) -> torch.Tensor:
    a, b, c = coefficients
    return a * x**2 + b * x + c


@figure("parabola_descent", "Gradient descent on the parabola", "x", "f(x)")
def descent_path(student, reference, parameters):
    x_log, y_log = _path(student)
    expected_x, expected_y = _path(reference)
    ends = [*x_log, *expected_x]
    grid = torch.linspace(min(ends) - 0.5, max(ends) + 0.5, 200, dtype=torch.float64)
    return [
        line("f(x)", _parabola(parameters["parabola"], grid), grid),
        points("your path", x_log, y_log),
        line("reference path", expected_y, expected_x, style="dashed"),
    ]


@figure("curve_fit", "Fitting a parabola: error per step", "step", "mean squared error",
        log_y=True)  # fmt: skip
def fit_errors(student, reference, parameters):
    return history_lines(student, reference, "error_log")


@figure("curve_fit", "Your fitted parabola", "x", "y")
def fitted_parabola(student, reference, parameters):
    x = as_tensor(reference.value("x"), "x").reshape(-1)
    fitted = as_tensor(student.value("params"), "params", (3,)).tolist()
    return [
        points("noisy data", x, as_tensor(reference.value("y_noisy"), "y_noisy")),
        line("your fit", _parabola(fitted, x), x),
        line("true parabola", _parabola(parameters["true_coeffs"], x), x, style="dashed"),
    ]
