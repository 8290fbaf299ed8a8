"""Checks for 02_linear_regression_numpy: hand-derived gradients, SGD, GD and autograd."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
import torch

from grader.expect import (
    CheckFailed,
    HistoryRules,
    Mistake,
    as_float_list,
    as_tensor,
    assert_close,
    assert_history_of_model,
    assert_length,
    assert_same_history,
    by_hand_cases,
    fmt,
)
from grader.extract import Call
from grader.figures import agreement, figure, history_lines
from grader.replay import PILING_UP, descent_mistakes, linear_descent, with_ones

VALUES = [
    "n_epochs", "N", "x", "y", "w_init", "b_init", "sgd_learning_rate", "gd_learning_rate",
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
GRADIENT_FACTORS = {0.5: "the 2 of the derivative of r² is missing?"}


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
        assert_close(got_w, expected_w, "dℓ/dw", where=where, factors=GRADIENT_FACTORS, **FLOAT64)
        assert_close(got_b, expected_b, "dℓ/db", where=where, factors=GRADIENT_FACTORS, **FLOAT64)


def _parameters(run, weights: str, bias: str) -> torch.Tensor:
    return torch.cat(
        [as_tensor(run.value(weights), weights, (2,)), as_tensor(run.value(bias), bias, (1,))]
    )


def _data(reference) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The features with a column of ones, the labels and the start (w_init, b_init)."""
    x = as_tensor(reference.value("x"), "x").numpy().reshape(-1, 2)
    start = _parameters(reference, "w_init", "b_init").numpy()
    return with_ones(x), as_tensor(reference.value("y"), "y").reshape(-1).numpy(), start


def _mean_loss(features: np.ndarray, targets: np.ndarray, params: Any) -> float:
    with np.errstate(all="ignore"):  # a student's parameters may be huge
        return float(np.mean((features @ np.asarray(params) - targets) ** 2))


def _sgd(reference, factor: float = 1.0, *, before: bool = False) -> list[float]:
    """The prescribed SGD replayed: examples in order, each loss taken after its update
    (`before`: before it), the epoch's mean logged."""
    features, targets, params = _data(reference)
    rate = factor * float(reference.value("sgd_learning_rate"))
    losses: list[float] = []
    with np.errstate(all="ignore"):  # the replays of some mistakes diverge
        for _ in range(int(reference.value("n_epochs"))):
            losses.append(_sgd_epoch(features, targets, params, rate, before))
            if not np.isfinite(losses[-1]):
                break
    return losses


def _sgd_epoch(features, targets, params, rate: float, before: bool) -> float:
    """One epoch of the replay, updating `params` in place; the epoch's mean loss."""
    total = 0.0
    for row, target in zip(features, targets, strict=True):
        residual = row @ params - target
        params -= rate * 2 * residual * row
        total += residual**2 if before else (row @ params - target) ** 2
    return float(total / len(targets))


def _history(run, name: str, reference) -> list[float]:
    losses = as_float_list(run.value(name), name)
    assert_length(losses, int(reference.value("n_epochs")), f"`{name}`", unit="epoch")
    return losses


def _rules(reference, logged: str) -> HistoryRules:
    n = int(reference.value("N"))
    return HistoryRules(
        start="`w_init`, `b_init` (copies of them)",
        logged=logged,
        stop="`n_epochs` epochs, one entry each",
        factors={
            float(n): f"the epoch's total, not divided by N = {n}?",
            1 / n: "divided by N twice?",
        },
    )


SGD_LOGGED = "the mean over the epoch of each example's loss measured right after its update"
GD_LOGGED = "the mean loss at the parameters before the epoch's update"


def _sgd_mistakes(reference) -> list[Mistake]:
    n = int(reference.value("N"))
    mistakes = descent_mistakes(lambda factor, _: _sgd(reference, factor), _sgd(reference), n,
                                piling_up="")  # fmt: skip
    before = "each example's loss is taken before its update; the text asks for it after"
    return [*mistakes, Mistake(before, tuple(_sgd(reference, before=True)))]


def _assert_sgd_history(student, reference) -> list[float]:
    losses = _history(student, "sgd_losses", reference)
    expected = _history(reference, "sgd_losses", reference)
    assert_same_history(losses, expected, "`sgd_losses`", rtol=1e-4, atol=1e-8,
                        rules=_rules(reference, SGD_LOGGED),
                        mistakes=functools.partial(_sgd_mistakes, reference))  # fmt: skip
    return losses


def _assert_history_ends_at_the_model(student, reference, name: str, model: tuple[str, str],
                                      tol: dict) -> None:  # fmt: skip
    """`name`'s last entry is the loss of the parameters `model` returned (recomputed on the
    reference's data): the history is the training of those parameters."""
    losses = as_float_list(student.value(name), name)
    features, targets, _ = _data(reference)
    end = _mean_loss(features, targets, _parameters(student, *model))
    start = as_float_list(reference.value(name), name)[0]
    assert_history_of_model(losses, f"`{name}`", start=start, end=end, unit="epoch", **tol)


@pytest.mark.grade("sgd_loop", points=2)
def test_sgd_matches_reference(student, reference):
    _assert_sgd_history(student, reference)
    _assert_history_ends_at_the_model(student, reference, "sgd_losses", ("w_sgd", "b_sgd"), FLOAT32)
    for name, shape in (("w_sgd", (2,)), ("b_sgd", (1,))):
        got = as_tensor(student.value(name), name, shape)
        expected = as_tensor(reference.value(name), name, shape)
        assert_close(
            got, expected, f"`{name}`",
            where="(SGD from w_init, b_init, visiting the examples in order)", **FLOAT64,
        )  # fmt: skip


@pytest.mark.grade("sgd_loop", points=1)
def test_sgd_recovers_true_weights_and_agrees_with_gd(student, reference, parameters):
    _assert_sgd_history(student, reference)
    _assert_history_ends_at_the_model(student, reference, "sgd_losses", ("w_sgd", "b_sgd"), FLOAT32)
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
    _assert_sgd_history(student, reference)


def _gd_mistakes(reference, piling_up: str) -> list[Mistake]:
    features, targets, start = _data(reference)
    rate, epochs = float(reference.value("gd_learning_rate")), int(reference.value("n_epochs"))

    def replay(factor: float, accumulate: bool) -> list[float]:
        return linear_descent(features, targets, start, rate * factor, epochs,
                              accumulate=accumulate)  # fmt: skip

    expected = _history(reference, "gd_losses", reference)
    return descent_mistakes(replay, expected, len(targets), piling_up=piling_up)


def _assert_losses_follow_gd(student, reference, name: str, tol: dict, piling_up: str = ""):
    """`name` follows the reference's `gd_losses`."""
    losses = _history(student, name, reference)
    expected = _history(reference, "gd_losses", reference)
    mistakes = functools.partial(_gd_mistakes, reference, piling_up)
    assert_same_history(losses, expected, f"`{name}`", rules=_rules(reference, GD_LOGGED),
                        mistakes=mistakes, **tol)  # fmt: skip


@pytest.mark.grade("gd_loop", points=2)
def test_gd_matches_reference(student, reference):
    _assert_losses_follow_gd(student, reference, "gd_losses", FLOAT64)
    _assert_history_ends_at_the_model(student, reference, "gd_losses", ("w_gd", "b_gd"), FLOAT64)
    for name, shape in (("w_gd", (2,)), ("b_gd", (1,))):
        got = as_tensor(student.value(name), name, shape)
        expected = as_tensor(reference.value(name), name, shape)
        assert_close(got, expected, f"`{name}`", where="(gradient descent from w_init, b_init)",
                     **FLOAT64)  # fmt: skip


@pytest.mark.grade("gd_loop", points=1)
def test_gd_losses(student, reference):
    _assert_losses_follow_gd(student, reference, "gd_losses", FLOAT64)


def _assert_not_copied(student) -> None:
    """The autograd loop computes in float32: a history equal to gd_loop's float64 one, entry by
    entry (or to its float32 rounding), was copied, not computed."""
    autograd = as_float_list(student.value("autograd_losses"), "autograd_losses")
    gd = as_float_list(student.value("gd_losses"), "gd_losses")
    if len(autograd) != len(gd) or len(gd) < 2:
        return
    mine, theirs = np.asarray(autograd), np.asarray(gd)
    with np.errstate(all="ignore"):  # a diverged history does not fit in float32
        rounded = theirs.astype(np.float32).astype(np.float64)
    if np.allclose(mine, theirs, rtol=1e-12, atol=0) or np.array_equal(mine, rounded):
        raise CheckFailed(
            "`autograd_losses` is `gd_losses` copied: float32 tensors cannot give the float64 "
            "losses of gd_loop at every epoch, so the autograd loop did not run on x_t and y_t"
        )


@pytest.mark.grade("autograd_loop", points=2)
def test_autograd_agrees_with_gd(student, reference):
    _assert_autograd_history(student, reference)
    _assert_history_ends_at_the_model(
        student, reference, "autograd_losses", ("w_v", "b_v"), FLOAT32
    )
    for name, gd_name, shape in (("w_v", "w_gd", (2, 1)), ("b_v", "b_gd", (1, 1))):
        value = student.value(name)
        if not isinstance(value, torch.Tensor):
            raise CheckFailed(f"`{name}` should be a torch tensor, it is a {type(value).__name__}")
        got = as_tensor(value, name, shape, exact=True)
        expected = as_tensor(reference.value(gd_name), gd_name, shape)
        where = f"(must agree with gradient descent's `{gd_name}`)"
        assert_close(got, expected, f"`{name}`", where=where, **FLOAT32)


@pytest.mark.grade("autograd_loop", points=1)
def test_autograd_losses(student, reference):
    _assert_autograd_history(student, reference)


def _assert_autograd_history(student, reference) -> None:
    _assert_not_copied(student)
    _assert_losses_follow_gd(student, reference, "autograd_losses", FLOAT32, PILING_UP)


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
