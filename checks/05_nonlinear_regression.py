"""Checks for 05_nonlinear_regression: tanh's derivative and a trained 1-10-1 ReLU network."""

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
    assert_finite,
    assert_history_of_model,
    assert_tensor_like,
    by_hand_cases,
    fmt,
    module_state,
    tolerance,
)
from grader.extract import Call
from grader.figures import figure, history_lines, line, points

VALUES = ["model", "losses", "x", "y"]

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. None here: the network's training does not use f_prime.
DEPENDS_ON: dict[str, dict[str, str]] = {}

SHAPES = {"fc0.weight": (10, 1), "fc0.bias": (10,), "fc1.weight": (1, 10), "fc1.bias": (1,)}
LARGE = [-1000.0, -100.0, -50.0, -20.0, 20.0, 50.0, 100.0, 1000.0]
# In float64 every formula for tanh' (1 - tanh², 1/cosh², 4/(e^x + e^-x)², the sigmoid form, ...)
# is within 1e-15 of the exact derivative. A finite difference cannot get that close: a central
# one is at best ~3e-11 off, a five-point stencil ~2e-13, a seven-point one ~4e-14, whatever its
# step, because its truncation and round-off errors trade against each other. Errors between
# this bound and the ordinary tolerance are named as what they are.
FORMULA_ERROR = 2e-14
FRESH_POINTS = 2000
# A history of at least ten steps (the minimum asked) with this few distinct values is made up.
FEW_VALUES = 3


def hidden_parameters(parameters: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    curvature = float(rng.uniform(0.03, 0.08)) * float(rng.choice([-1.0, 1.0]))
    intercept = round(float(rng.uniform(-2, 2)), 2)
    slope = round(float(rng.uniform(-0.8, 0.8)), 2)
    # (a, b, c) of a*x**2 + b*x + c: highest power first, as in notebook 01.
    return {"true_coeffs": [round(curvature, 3), slope, intercept]}


def calls(parameters: dict[str, Any], rng: np.random.Generator) -> list[Call]:
    shape = tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))
    cases = [
        (torch.linspace(-5, 5, 101),),
        (torch.tensor(rng.normal(scale=3, size=shape), dtype=torch.float32),),
        (torch.tensor(rng.normal(scale=3, size=7), dtype=torch.float64),),
        (torch.linspace(-4, 4, 81, dtype=torch.float64),),
        (torch.tensor(LARGE, dtype=torch.float32),),
        (torch.tensor(LARGE, dtype=torch.float64),),
    ]
    return [Call("f_prime", cases)]


def _outputs(student) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for case in by_hand_cases(student, "f_prime"):
        (x,) = case.args
        if case.error:
            raise CheckFailed(f"f_prime(x) raised {case.error} for x of shape {tuple(x.shape)}")
        pairs.append((x, as_tensor(case.output, "f_prime(x)", tuple(x.shape))))
    return pairs


def _by_formula(student) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`_outputs`, once the float64 results are as exact as a formula's: a finite difference is
    forbidden work and earns none of the cell's points, however close it comes."""
    rtol, atol = tolerance("cpu")
    pairs = _outputs(student)
    for x, got in pairs:
        if x.dtype != torch.float64 or x.abs().max() > 10 or not bool(torch.isfinite(got).all()):
            continue
        expected = _exact_derivative(x)
        error = float((got - expected).abs().max())
        # Farther off than the ordinary tolerance is plainly wrong, which the comparison says.
        if error > FORMULA_ERROR and torch.allclose(got, expected, rtol=rtol, atol=atol):
            raise CheckFailed(
                f"f_prime(x) is up to {error:.2g} away from the derivative for float64 x = "
                f"{fmt(x)}: a formula such as 1 - tanh²(x) is exact to round-off (about 1e-16) "
                "there, an error this size is that of a finite difference (tanh at nearby "
                "points) or of a computation in float32. Compute the formula, in x's dtype"
            )
    return pairs


def _exact_derivative(x: torch.Tensor) -> torch.Tensor:
    x64 = x.double().requires_grad_(True)
    (derivative,) = torch.autograd.grad(torch.tanh(x64).sum(), x64)
    return derivative


@pytest.mark.grade("tanh_derivative", points=2)
def test_f_prime_matches_autograd(student):
    rtol, atol = tolerance("cpu")
    for case, (x, got) in zip(student.cases("f_prime"), _outputs(student), strict=True):
        assert_tensor_like(case.output, "f_prime(x)", tuple(x.shape), x.dtype)
        if x.abs().max() > 10:
            continue
        assert_finite(got, "f_prime(x)", where=f"for x of shape {tuple(x.shape)}")
        assert_close(got, _exact_derivative(x), "f_prime(x)", rtol=rtol, atol=atol,
                     where=f"at x={fmt(x)} ({x.dtype})")  # fmt: skip
    _by_formula(student)


@pytest.mark.grade("tanh_derivative", points=1)
def test_f_prime_is_finite_for_large_inputs(student):
    for x, got in _by_formula(student):
        if x.abs().max() <= 10:
            continue
        assert_finite(got, "f_prime(x)", where=f"for x = {fmt(x, limit=8)} ({x.dtype})")
        assert_close(got, torch.zeros_like(got), "f_prime(x)", rtol=0, atol=1e-6,
                     where=f"for large |x| = {fmt(x, limit=8)} (tanh is flat there)")  # fmt: skip


def _network(run) -> torch.nn.Module:
    state = module_state(run.value("model"), "model", SHAPES)
    network = torch.nn.Sequential(torch.nn.Linear(1, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
    network.double()
    network.load_state_dict(
        {key.replace("fc0", "0").replace("fc1", "2"): v for key, v in state.items()}
    )
    return network


def _fresh_error(network: torch.nn.Module, parameters: dict[str, Any], rng) -> float:
    a, b, c = parameters["true_coeffs"]
    x = torch.tensor(rng.normal(size=(FRESH_POINTS, 1)) * 10, dtype=torch.float64)
    with torch.no_grad():
        return float(((network(x) - (a * x**2 + b * x + c)) ** 2).mean())


def _losses_of_the_model(student, reference) -> list[float]:
    """`losses`, once it is a training history of the returned network: at least ten entries
    that move, starting at the untrained network's loss and ending at the returned one's (both
    recomputed on the reference's data)."""
    losses = as_float_list(student.value("losses"), "losses")
    x = as_tensor(reference.value("x"), "x").reshape(-1, 1)
    y = as_tensor(reference.value("y"), "y").reshape(-1, 1)
    with torch.no_grad():
        end = float(((_network(student)(x) - y) ** 2).mean())
    start = as_float_list(reference.value("losses"), "losses")[0]
    # One mini-batch's loss of the untrained network can be far from the whole data's (an honest
    # Adam on batches of 100 starts 40 % below it): only a start above twice it is refused.
    assert_history_of_model(losses, "`losses`", start=start, end=end, min_length=10,
                            rtol=1e-3, atol=1e-6, start_rtol=1.0)  # fmt: skip
    _assert_not_a_formula(losses)
    return losses


def _assert_not_a_formula(losses: list[float]) -> None:
    """Fail for a history made to start and end where the grader looks rather than logged: one
    that steps from start to end in equal differences or equal ratios (`np.linspace`,
    `np.geomspace`), or that takes only a few values (`[start] + [end] * n`). The loss of a
    network that trains does neither: it changes at every step, and not by a formula."""
    history = np.asarray(losses)
    steps = np.diff(history)
    if np.allclose(np.diff(steps), 0.0, rtol=0.0, atol=1e-9 * float(np.ptp(history))):
        kind = "in equal steps"
    elif bool((history > 0).all()) and np.allclose(np.diff(np.diff(np.log(history))), 0.0,
                                                   rtol=0.0, atol=1e-9):  # fmt: skip
        kind = "by a constant ratio at each step"
    elif len(set(losses)) <= FEW_VALUES:
        kind = f"through only {len(set(losses))} different values in {len(losses)} steps"
    else:
        return
    raise CheckFailed(
        f"`losses` goes from {fmt(history[0])} to {fmt(history[-1])} {kind}, which no training "
        "loss does: log `loss.item()` at each step of the loop that trains `model` (is the "
        "history written by hand?)"
    )


@pytest.mark.grade("nonlinear_training", points=3)
def test_network_fits_fresh_points(student, reference, parameters, rng):
    _losses_of_the_model(student, reference)
    seed = int(rng.integers(2**31))
    got = _fresh_error(_network(student), parameters, np.random.default_rng(seed))
    expected = _fresh_error(_network(reference), parameters, np.random.default_rng(seed))
    # Within reach of the reference, and never worse than half the noise variance (2**2 / 2).
    limit = max(4 * expected, 2.0)
    if not np.isfinite(got) or got > limit:
        raise CheckFailed(
            f"on {FRESH_POINTS} fresh points the network's mean squared error to the true curve "
            f"is {got:.4g}; it must be at most {limit:.3g} (the reference reaches {expected:.3g}): "
            "train longer, or with a better learning rate?"
        )


@pytest.mark.grade("nonlinear_training", points=1)
def test_training_loss_goes_down(student, reference):
    losses = _losses_of_the_model(student, reference)
    final = min(losses[-10:])
    expected = min(as_float_list(reference.value("losses"), "losses")[-10:])
    if final > 3 * expected or final > losses[0] / 2:
        raise CheckFailed(
            f"the training loss only went from {losses[0]:.4g} to {final:.4g}; "
            f"the reference reaches {expected:.4g}"
        )


@figure("tanh_derivative", "Your f_prime against the derivative of tanh", "x", "f'(x)")
def derivative_curve(student, reference, parameters):
    x, got = _outputs(student)[0]
    return [
        line("your f_prime(x)", got, x),
        line("1 - tanh(x)²", 1 - torch.tanh(x.double()) ** 2, x, style="dashed"),
    ]


@figure("nonlinear_training", "Training loss per step", "step", "MSE", log_y=True)
def loss_history(student, reference, parameters):
    return history_lines(student, reference, "losses")


@figure("nonlinear_training", "Your network against the true curve", "x", "y")
def network_fit(student, reference, parameters):
    x = as_tensor(reference.value("x"), "x").reshape(-1)
    grid = torch.linspace(float(x.min()), float(x.max()), 300, dtype=torch.float64)
    a, b, c = parameters["true_coeffs"]
    with torch.no_grad():
        yours = _network(student)(grid.reshape(-1, 1)).reshape(-1)
        theirs = _network(reference)(grid.reshape(-1, 1)).reshape(-1)
    return [
        points("noisy data", x, as_tensor(reference.value("y"), "y")),
        line("true curve", a * grid**2 + b * grid + c, grid, style="dashed"),
        line("your network", yours, grid),
        line("reference network", theirs, grid, style="dashed"),
    ]
