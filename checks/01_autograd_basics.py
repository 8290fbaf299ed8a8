"""Checks for 01_autograd_basics: gradient descent on a parabola, and fitting a parabola."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pytest
import torch

from grader.expect import (
    CheckFailed,
    HistoryRules,
    as_float_list,
    as_tensor,
    assert_close,
    assert_history_follows_reference,
    assert_history_of_model,
    assert_same_history,
    fmt_apart,
    tolerance,
)
from grader.figures import figure, history_lines, line, points
from grader.replay import descent_mistakes, linear_descent

VALUES = [
    "x_start", "learning_rate", "tolerance", "max_steps", "x_final", "x_log", "y_log",
    "params", "error_log", "x", "y_noisy", "params_init", "fit_learning_rate",
    "error_threshold", "max_fit_steps",
]  # fmt: skip
DESCENT_STOP = "stop right after the first step whose slope had abs(g) <= tolerance, or max_steps"
Y_RULES = HistoryRules(
    start="`x_start` (a copy of it that tracks gradients)",
    logged="f at the point where the slope was taken, before the step",
    stop=DESCENT_STOP,
)
X_RULES = dataclasses.replace(Y_RULES, logged="the position after the step")
FIT_RULES = HistoryRules(
    start="`params_init` (a copy of it that tracks gradients)",
    logged="the error computed in the step, before its update",
    stop="stop after the step whose error is below error_threshold, or after max_fit_steps",
    factors={200.0: "the sum over the 200 points, not their mean?"},
)

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


def _descent(run, parameters: dict[str, Any], factor: float, accumulate: bool):
    """The prescribed descent replayed in float64 from the reference's `x_start`: (x_log, y_log).

    `accumulate`: the slopes pile up in x.grad (no x.grad.zero_()), and the stop rule reads them.
    """
    a, b, c = parameters["parabola"]
    x = float(as_tensor(run.value("x_start"), "x_start", (1,))[0])
    rate, stop = float(run.value("learning_rate")), float(run.value("tolerance"))
    slope, x_log, y_log = 0.0, [], []
    for _ in range(int(run.value("max_steps"))):
        slope = slope + (2 * a * x + b) if accumulate else 2 * a * x + b
        y_log.append(a * x**2 + b * x + c)
        x -= factor * rate * slope
        x_log.append(x)
        if abs(slope) <= stop or not abs(x) < 1e100:  # a diverging replay ends before overflow
            break
    return x_log, y_log


def _descent_mistakes(reference, parameters: dict[str, Any]):
    def replay(factor: float, accumulate: bool) -> list[float]:
        return _descent(reference, parameters, factor, accumulate)[1]

    return descent_mistakes(replay, _path(reference)[1])


@pytest.mark.grade("parabola_descent", points=2)
def test_descent_path_matches_reference(student, reference, parameters, device):
    rtol, atol = tolerance(device)
    x_log, y_log = _path(student)
    expected_x, expected_y = _path(reference)
    mistakes = functools.partial(_descent_mistakes, reference, parameters)
    assert_same_history(y_log, expected_y, "`y_log`", rtol=10 * rtol, atol=10 * atol,
                        rules=Y_RULES, mistakes=mistakes)  # fmt: skip
    assert_same_history(x_log, expected_x, "`x_log`", rtol=10 * rtol, atol=10 * atol,
                        rules=X_RULES)  # fmt: skip


@pytest.mark.grade("parabola_descent", points=1)
def test_descent_takes_real_steps_to_the_minimum(student, reference, parameters):
    a, b, c = parameters["parabola"]
    x_log, y_log = _path(student)
    x0 = float(as_tensor(reference.value("x_start"), "x_start", (1,))[0])
    rate = float(reference.value("learning_rate"))
    if abs(y_log[0] - (a * x0**2 + b * x0 + c)) > 1e-3 * max(1.0, abs(y_log[0])):
        mine, theirs = fmt_apart(y_log[0], a * x0**2 + b * x0 + c)
        raise CheckFailed(
            f"y_log[0] is {mine}, but f(x_start) is {theirs}: the descent should start from a "
            "copy of `x_start`"
        )
    for step, (x, after, y) in enumerate(zip([x0, *x_log[:-1]], x_log, y_log, strict=True)):
        if abs(y - (a * x**2 + b * x + c)) > 1e-3 * max(1.0, abs(y)):
            raise CheckFailed(f"y_log[{step}] = {y:.6g} is not f(x) where the gradient was taken")
        target = x - rate * (2 * a * x + b)
        if abs(after - target) > 1e-4 * max(1.0, abs(target)):
            mine, theirs = fmt_apart(after, target)
            raise CheckFailed(
                f"step {step} should go from x = {x:.6g} to {theirs} (x - learning_rate * f'(x), "
                f"with the slope at x alone), but x_log[{step}] is {mine}"
            )
    _assert_descent_stops_by_the_rule(student, reference, parameters, x_log)
    x_final = float(as_tensor(student.value("x_final"), "x_final").reshape(-1)[0])
    minimum = -b / (2 * a)
    if abs(x_final - minimum) > 1e-3 or abs(x_final - x_log[-1]) > 1e-6:
        raise CheckFailed(
            f"`x_final` is {x_final:.6g}: it should be the last point of the descent, "
            f"close to the minimum at x = {minimum:.6g}"
        )


def _assert_descent_stops_by_the_rule(student, reference, parameters, x_log: list[float]) -> None:
    a, b, _ = parameters["parabola"]
    x0 = float(as_tensor(reference.value("x_start"), "x_start", (1,))[0])
    stop, most = float(reference.value("tolerance")), int(reference.value("max_steps"))
    slopes = [abs(2 * a * x + b) for x in [x0, *x_log[:-1]]]
    early = next((step for step, g in enumerate(slopes[:-1]) if g <= stop), None)
    if early is not None:
        raise CheckFailed(
            f"the slope at step {early} was already {slopes[early]:.3g} <= tolerance, but the loop "
            f"went on for {len(slopes) - 1 - early} more steps ({DESCENT_STOP})"
        )
    if slopes[-1] > stop and len(slopes) < most:
        raise CheckFailed(
            f"the loop stopped after {len(slopes)} steps, while the last slope was "
            f"{slopes[-1]:.3g} > tolerance ({DESCENT_STOP})"
        )


def _design(reference) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix (x², x, 1) and the targets, from the reference's data."""
    x = as_tensor(reference.value("x"), "x").reshape(-1).numpy()
    return np.stack([x**2, x, np.ones_like(x)], axis=1), as_tensor(
        reference.value("y_noisy"), "y_noisy"
    ).reshape(-1).numpy()


def _fit_mistakes(reference):
    features, targets = _design(reference)
    start = as_tensor(reference.value("params_init"), "params_init", (3,)).numpy()
    rate, steps = float(reference.value("fit_learning_rate")), int(reference.value("max_fit_steps"))
    below = float(reference.value("error_threshold"))

    def replay(factor: float, accumulate: bool) -> list[float]:
        return linear_descent(features, targets, start, rate * factor, steps,
                              accumulate=accumulate, stop_below=below)  # fmt: skip

    expected = as_float_list(reference.value("error_log"), "error_log")
    return descent_mistakes(replay, expected, len(targets))


def _fitted(student, reference, device) -> torch.Tensor:
    """The student's `params`, once `error_log` follows the reference's and ends where `params`
    is (its error recomputed on the reference's data)."""
    rtol, atol = tolerance(device)
    mistakes = functools.partial(_fit_mistakes, reference)
    errors = assert_history_follows_reference(student, reference, "error_log", rtol=100 * rtol,
                                              atol=100 * atol, rules=FIT_RULES,
                                              mistakes=mistakes)  # fmt: skip
    got = as_tensor(student.value("params"), "params", (3,))
    features, targets = _design(reference)
    error = float(np.mean((features @ got.numpy() - targets) ** 2))
    start = as_float_list(reference.value("error_log"), "error_log")[0]
    assert_history_of_model(errors, "`error_log`", start=start, end=error, rtol=100 * rtol,
                            atol=100 * atol, min_length=1)  # fmt: skip
    return got


@pytest.mark.grade("curve_fit", points=2)
def test_fit_matches_reference(student, reference, device):
    rtol, atol = tolerance(device)
    got = _fitted(student, reference, device)
    expected_params = as_tensor(reference.value("params"), "params", (3,))
    assert_close(got, expected_params, "`params`", rtol=100 * rtol, atol=100 * atol,
                 where="(gradient descent from params_init)")  # fmt: skip


@pytest.mark.grade("curve_fit", points=1)
def test_fit_beats_the_initial_guess(student, reference, device):
    _fitted(student, reference, device)
    errors = as_float_list(student.value("error_log"), "error_log")
    expected = as_float_list(reference.value("error_log"), "error_log")
    if not errors[-1] <= 1.05 * expected[-1]:
        raise CheckFailed(
            f"the fit's error ends at {errors[-1]:.5g}; the reference reaches {expected[-1]:.5g} "
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
