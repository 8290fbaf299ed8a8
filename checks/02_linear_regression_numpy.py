"""Checks for 02_linear_regression_numpy: hand-derived gradients, SGD, GD and autograd."""

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
    assert_decreasing,
    assert_length,
    by_hand_cases,
    fmt,
)
from grader.extract import Call
from grader.figures import agreement, figure, history_lines

VALUES = [
    "n_epochs",
    "w_sgd", "b_sgd", "sgd_losses",
    "w_gd", "b_gd", "gd_losses",
    "w_v", "b_v", "autograd_losses",
]  # fmt: skip

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. Both numpy loops call `gradient`; the autograd loop uses none of them.
DEPENDS_ON = {
    "sgd_loop": {"manual_gradient": "gradient"},
    "gd_loop": {"manual_gradient": "gradient"},
}

# numpy float64 loops are compared tightly; the float32 autograd loop within float32 rounding.
FLOAT64 = {"rtol": 1e-6, "atol": 1e-9}
FLOAT32 = {"rtol": 1e-4, "atol": 1e-5}


def hidden_parameters(parameters: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "w_true": [round(float(v), 2) for v in rng.uniform(-3, 3, size=2)],
        "b_true": round(float(rng.uniform(-2, 2)), 2),
    }


# "By hand" means from the formulas: the last state is so large that w + h loses a
# finite-difference step h, and a gradient by differences is off there.
FINITE_DIFFERENCES = "w and b this large lose a finite-difference step: use the formulas"


def calls(parameters: dict[str, Any], rng: np.random.Generator) -> list[Call]:
    xs = [rng.uniform(-1, 1, size=2) for _ in range(5)] + [np.zeros(2), rng.uniform(-1, 1, 2)]
    cases = [(x, float(rng.normal())) for x in xs]
    scales = [1.0] * (len(cases) - 1) + [1e6]
    states = [{"w": rng.normal(size=2) * s, "b": rng.normal(size=1) * s} for s in scales]
    return [Call("gradient", cases, states)]


def _autograd_gradient(x: np.ndarray, y: float, w: np.ndarray, b: np.ndarray) -> tuple[Any, Any]:
    w_t = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b_t = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = ((torch.tensor(x, dtype=torch.float64) @ w_t + b_t - y) ** 2).sum()
    loss.backward()
    return w_t.grad, b_t.grad


@pytest.mark.grade("manual_gradient", points=1)
def test_gradient_returns_two_arrays(student):
    for case in by_hand_cases(student, "gradient"):
        if case.error:
            raise CheckFailed(f"gradient(x, y) raised {case.error}")
        if not isinstance(case.output, tuple) or len(case.output) != 2:
            raise CheckFailed("gradient(x, y) should return a pair (dl_dw, dl_db)")
        as_tensor(case.output[0], "dl_dw", shape=(2,))
        as_tensor(case.output[1], "dl_db", shape=(1,))


@pytest.mark.grade("manual_gradient", points=2)
def test_gradient_matches_autograd(student):
    for case in by_hand_cases(student, "gradient"):
        if case.error or not isinstance(case.output, tuple) or len(case.output) != 2:
            raise CheckFailed("gradient(x, y) does not return a pair (dl_dw, dl_db)")
        x, y = case.args
        w, b = case.globals["w"], case.globals["b"]
        where = f"at x={fmt(torch.tensor(x))}, y={y:.4g} (w={fmt(torch.tensor(w))}, b={b[0]:.4g})"
        if np.abs(w).max() > 1e3:
            where += f"; {FINITE_DIFFERENCES}"
        expected_w, expected_b = _autograd_gradient(x, y, w, b)
        got_w = as_tensor(case.output[0], "dl_dw", shape=(2,))
        got_b = as_tensor(case.output[1], "dl_db", shape=(1,))
        assert_close(got_w, expected_w, "dℓ/dw", where=where, **FLOAT64)
        assert_close(got_b, expected_b, "dℓ/db", where=where, **FLOAT64)


def _parameters(run, weights: str, bias: str) -> torch.Tensor:
    return torch.cat(
        [as_tensor(run.value(weights), weights, (2,)), as_tensor(run.value(bias), bias, (1,))]
    )


def _history(run, name: str, reference) -> list[float]:
    losses = as_float_list(run.value(name), name)
    assert_length(losses, int(reference.value("n_epochs")), f"`{name}`", unit="epoch")
    return losses


@pytest.mark.grade("sgd_loop", points=2)
def test_sgd_matches_reference(student, reference):
    for name, shape in (("w_sgd", (2,)), ("b_sgd", (1,))):
        got = as_tensor(student.value(name), name, shape)
        expected = as_tensor(reference.value(name), name, shape)
        assert_close(
            got, expected, f"`{name}`",
            where="(SGD from w_init, b_init, visiting the examples in order)", **FLOAT64,
        )  # fmt: skip


@pytest.mark.grade("sgd_loop", points=1)
def test_sgd_recovers_true_weights_and_agrees_with_gd(student, reference, parameters):
    sgd = _parameters(student, "w_sgd", "b_sgd")
    truth = torch.tensor([*parameters["w_true"], parameters["b_true"]], dtype=torch.float64)
    reference_sgd = _parameters(reference, "w_sgd", "b_sgd")
    gd = _parameters(reference, "w_gd", "b_gd")
    # 100 epochs of SGD get close to the truth, not onto it: allow what the reference needs.
    gap = max(float((reference_sgd - truth).abs().max()), float((reference_sgd - gd).abs().max()))
    margin = max(0.05, 3 * gap)
    assert_close(sgd, truth, "(w_sgd, b_sgd)", rtol=0, atol=margin,
                 where="(the true coefficients)")  # fmt: skip
    assert_close(sgd, gd, "(w_sgd, b_sgd)", rtol=0, atol=margin,
                 where="(full-batch gradient descent from the same start)")  # fmt: skip


@pytest.mark.grade("sgd_loop", points=1)
def test_sgd_losses(student, reference):
    losses = _history(student, "sgd_losses", reference)
    assert_decreasing(losses, "the SGD epoch loss", slack=1e-3)
    expected = torch.tensor(_history(reference, "sgd_losses", reference))
    assert_close(torch.tensor(losses), expected, "`sgd_losses`", rtol=1e-4, atol=1e-8)


@pytest.mark.grade("gd_loop", points=2)
def test_gd_matches_reference(student, reference):
    for name, shape in (("w_gd", (2,)), ("b_gd", (1,))):
        got = as_tensor(student.value(name), name, shape)
        expected = as_tensor(reference.value(name), name, shape)
        assert_close(got, expected, f"`{name}`", where="(gradient descent from w_init, b_init)",
                     **FLOAT64)  # fmt: skip


def _assert_losses_follow_gd(student, reference, name: str, what: str, where: str, tol: dict):
    losses = _history(student, name, reference)
    assert_decreasing(losses, what)
    expected = torch.tensor(_history(reference, "gd_losses", reference))
    assert_close(torch.tensor(losses), expected, f"`{name}`", where=where, **tol)


@pytest.mark.grade("gd_loop", points=1)
def test_gd_losses(student, reference):
    where = "(the loss before each epoch's update)"
    _assert_losses_follow_gd(student, reference, "gd_losses", "the full-batch loss", where, FLOAT64)


@pytest.mark.grade("autograd_loop", points=2)
def test_autograd_agrees_with_gd(student, reference):
    for name, gd_name, shape in (("w_v", "w_gd", (2, 1)), ("b_v", "b_gd", (1, 1))):
        value = student.value(name)
        if not isinstance(value, torch.Tensor):
            raise CheckFailed(f"`{name}` should be a torch tensor, it is a {type(value).__name__}")
        got = as_tensor(value, name, shape)
        expected = as_tensor(reference.value(gd_name), gd_name, shape)
        where = f"(must agree with gradient descent's `{gd_name}`)"
        assert_close(got, expected, f"`{name}`", where=where, **FLOAT32)


@pytest.mark.grade("autograd_loop", points=1)
def test_autograd_losses(student, reference):
    where = "(must agree with gradient descent's `gd_losses`)"
    what = "the autograd loop's loss"
    _assert_losses_follow_gd(student, reference, "autograd_losses", what, where, FLOAT32)


@figure("manual_gradient", "Your gradient against autograd's", "autograd", "your gradient")
def gradient_agreement(student, reference, parameters):
    got, expected = [], []
    for case in student.cases("gradient"):
        x, y = case.args
        dl_dw, dl_db = case.output
        expected_w, expected_b = _autograd_gradient(x, y, case.globals["w"], case.globals["b"])
        got += [
            *as_tensor(dl_dw, "dl_dw", (2,)).tolist(),
            *as_tensor(dl_db, "dl_db", (1,)).tolist(),
        ]
        expected += [*expected_w.tolist(), *expected_b.tolist()]
    return agreement(got, expected)


@figure("sgd_loop", "SGD: mean loss per epoch", "epoch", "mean loss", log_y=True)
def sgd_history(student, reference, parameters):
    return history_lines(student, reference, "sgd_losses")


@figure("gd_loop", "Gradient descent: mean loss per epoch", "epoch", "mean loss", log_y=True)
def gd_history(student, reference, parameters):
    return history_lines(student, reference, "gd_losses")


@figure("autograd_loop", "Autograd loop against gradient descent by hand", "epoch", "mean loss",
        log_y=True)  # fmt: skip
def autograd_history(student, reference, parameters):
    return history_lines(student, reference, "autograd_losses", reference_name="gd_losses")
