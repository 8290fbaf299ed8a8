"""Checks for 04_autodiff_regression: manual MSE gradients, linear and logistic regression."""

from __future__ import annotations

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
    assert_tensor_like,
    by_hand_cases,
    module_state,
    tolerance,
)
from grader.extract import Call, Linear
from grader.figures import agreement, figure, history_lines
from grader.replay import descent_mistakes, linear_descent, seeded_linear, with_ones

VALUES = [
    "linear_model", "linear_losses",
    "logistic_model", "logistic_losses", "probabilities", "xs_cls", "ys_cls",
    "xs", "ys_true", "learning_rate", "n_epochs",
]  # fmt: skip

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. None here: both training loops use nn's own losses, not manual_mse_gradients.
DEPENDS_ON: dict[str, dict[str, str]] = {}

LINEAR_SHAPES = {"weight": (1, 2), "bias": (1,)}
LOGISTIC_SHAPES = {"weight": (1, 3), "bias": (1,)}
# (N, d, k, scale): the notebook's size, then others, down to a single example and a single
# feature; the last of large magnitude, where w + h loses a fixed finite-difference step h even
# in float64 and the loss itself overflows float32, while the formulas' gradients (about 1e21)
# stay finite: a difference of losses, in either precision, cannot pass it.
SIZES = [(30, 2, 1, 1.0), (7, 5, 3, 1.0), (1, 1, 1, 1.0), (50, 4, 6, 1.0), (20, 3, 2, 1e20)]


def hidden_parameters(parameters: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    centre = [round(float(v), 2) for v in rng.uniform(1.5, 2.5, size=2)]
    return {
        "w_true": [round(float(v), 2) for v in rng.uniform(-3, 3, size=2)],
        "b_true": round(float(rng.uniform(-5, 5)), 2),
        "positive_mean": [centre[0], -centre[1], 0.0],
        "negative_mean": [-centre[0], centre[1], 0.0],
    }


def calls(parameters: dict[str, Any], rng: np.random.Generator) -> list[Call]:
    cases = []
    for n, d, k, scale in SIZES:
        weight = torch.tensor(rng.normal(size=(k, d)) * scale, dtype=torch.float32)
        bias = torch.tensor(rng.normal(size=k) * scale, dtype=torch.float32)
        xs = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32)
        ys = torch.tensor(rng.normal(size=(n, k)), dtype=torch.float32)
        cases.append((Linear(weight, bias), xs, ys))
    return [Call("manual_mse_gradients", cases)]


def _autograd_mse_gradients(layer: Linear, xs: torch.Tensor, ys: torch.Tensor) -> tuple[Any, Any]:
    weight = layer.weight.double().requires_grad_(True)
    bias = layer.bias.double().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(xs.double() @ weight.T + bias, ys.double())
    return torch.autograd.grad(loss, (weight, bias))


def _pair(case: Any) -> tuple[Any, Any]:
    if case.error:
        raise CheckFailed(f"manual_mse_gradients(linear, xs, ys) raised {case.error}")
    if not isinstance(case.output, tuple) or len(case.output) != 2:
        raise CheckFailed("manual_mse_gradients should return a pair (grad_weight, grad_bias)")
    return case.output


@pytest.mark.grade("manual_mse_gradients", points=2)
def test_manual_gradients_match_autograd(student):
    rtol, atol = tolerance("cpu")
    for case in by_hand_cases(student, "manual_mse_gradients"):
        layer, xs, ys = case.args
        (n, d), k = xs.shape, ys.shape[1]
        where = f"for nn.Linear({d}, {k}) and N = {n}"
        if layer.weight.abs().max() > 100:
            where += " (weights this large lose a finite-difference step: use the formulas)"
        got_weight, got_bias = _pair(case)
        expected_weight, expected_bias = _autograd_mse_gradients(layer, xs, ys)
        weight = assert_tensor_like(got_weight, "grad_weight", (k, d))
        bias = assert_tensor_like(got_bias, "grad_bias", (k,))
        factors = _gradient_meanings(n, k)
        assert_close(weight, expected_weight, "dL/dW", rtol=rtol, atol=atol, where=where,
                     factors=factors)  # fmt: skip
        assert_close(bias, expected_bias, "dL/db", rtol=rtol, atol=atol, where=where,
                     factors=factors)  # fmt: skip


def _gradient_meanings(n: int, k: int) -> dict[float, str]:
    """What a constant factor between the student's gradient and autograd's means for N, k."""
    meanings = {
        0.5: "the 2 of the squared error's derivative is missing?",
        float(n * k): f"the sum over all N·k = {n * k} entries, not the mean?",
    }
    if k > 1:
        meanings[float(k)] = f"divided by N = {n} instead of N·k = {n * k}?"
    return meanings


@pytest.mark.grade("manual_mse_gradients", points=1)
def test_manual_gradients_do_not_use_autograd(student):
    for case in by_hand_cases(student, "manual_mse_gradients"):
        _pair(case)


# Each training cell: its model and history, the seed offset and sizes of its nn.Linear, its
# data, and whether its loss is the binary cross-entropy of the scores.
TRAININGS = {
    "linear_model": ("linear_losses", 1, (2, 1), ("xs", "ys_true"), False),
    "logistic_model": ("logistic_losses", 3, (3, 1), ("xs_cls", "ys_cls"), True),
}
RULES = HistoryRules(
    start="the model made above (trained in place, no new model)",
    logged="the loss computed in each epoch, before that epoch's update",
    stop="`n_epochs` epochs, one entry each",
    factors={30.0: "the sum over the 30 points, not their mean?"},
)


def _data(reference, model: str) -> tuple[np.ndarray, np.ndarray]:
    inputs, targets = TRAININGS[model][3]
    features = as_tensor(reference.value(inputs), inputs).numpy()
    return with_ones(features), as_tensor(reference.value(targets), targets).reshape(-1).numpy()


def _mistakes(reference, model: str, parameters: dict[str, Any]):
    losses, offset, layer, _, logistic = TRAININGS[model]
    features, targets = _data(reference, model)
    weight, bias = seeded_linear(int(parameters["seed"]) + offset, layer)
    start = np.concatenate([weight.reshape(-1), bias])
    rate, epochs = float(reference.value("learning_rate")), int(reference.value("n_epochs"))

    def replay(factor: float, accumulate: bool) -> list[float]:
        return linear_descent(features, targets, start, rate * factor, epochs,
                              logistic=logistic, accumulate=accumulate)  # fmt: skip

    expected = as_float_list(reference.value(losses), losses)
    return descent_mistakes(replay, expected, len(targets))


def _trained(student, reference, model: str, shapes: dict, device, parameters) -> dict:
    """The student's trained parameters, once their loss history follows the reference's and
    ends where the returned model is (its loss recomputed on the reference's data)."""
    rtol, atol = tolerance(device)
    losses = TRAININGS[model][0]
    mistakes = functools.partial(_mistakes, reference, model, parameters)
    history = assert_history_follows_reference(student, reference, losses, rtol=10 * rtol,
                                               atol=10 * atol, rules=RULES,
                                               mistakes=mistakes)  # fmt: skip
    start = as_float_list(reference.value(losses), losses)[0]
    assert_history_of_model(history, f"`{losses}`", start=start,
                            end=_model_loss(student, reference, model, shapes),
                            length=int(reference.value("n_epochs")), rtol=10 * rtol,
                            atol=10 * atol, unit="epoch")  # fmt: skip
    return module_state(student.value(model), model, shapes)


def _model_loss(run, reference, model: str, shapes: dict) -> float:
    state = module_state(run.value(model), model, shapes)
    features, targets = _data(reference, model)
    scores = features @ torch.cat([state["weight"].reshape(-1), state["bias"]]).numpy()
    if TRAININGS[model][4]:
        return float(np.mean(np.logaddexp(0.0, scores) - targets * scores))
    return float(np.mean((scores - targets) ** 2))


def _assert_training_matches(student, reference, model: str, shapes: dict, device, parameters):
    params = _trained(student, reference, model, shapes, device, parameters)
    expected = module_state(reference.value(model), model, shapes)
    rtol, atol = tolerance(device)
    for key in shapes:
        assert_close(params[key], expected[key], f"the trained {key}", rtol=10 * rtol,
                     atol=10 * atol, where="(SGD from the same initial layer)")  # fmt: skip


@pytest.mark.grade("linear_training", points=2)
def test_linear_matches_reference(student, reference, device, parameters):
    _assert_training_matches(student, reference, "linear_model", LINEAR_SHAPES, device, parameters)


@pytest.mark.grade("linear_training", points=1)
def test_linear_recovers_true_coefficients(student, reference, parameters, device):
    shapes = LINEAR_SHAPES
    params = _trained(student, reference, "linear_model", shapes, device, parameters)
    truth = torch.tensor([*parameters["w_true"], parameters["b_true"]], dtype=torch.float64)
    got = torch.cat([params["weight"].reshape(-1), params["bias"]])
    assert_close(got, truth, "(weight, bias)", rtol=0, atol=1e-2, where="(the true coefficients)")


@pytest.mark.grade("logistic_training", points=2)
def test_logistic_matches_reference(student, reference, device, parameters):
    shapes = LOGISTIC_SHAPES
    _assert_training_matches(student, reference, "logistic_model", shapes, device, parameters)


def _accuracy(params: dict, xs: torch.Tensor, ys: torch.Tensor) -> float:
    scores = xs @ params["weight"].T + params["bias"]
    return float(((scores > 0).double() == ys).double().mean())


@pytest.mark.grade("logistic_training", points=1)
def test_logistic_accuracy(student, reference, device, parameters):
    shapes = LOGISTIC_SHAPES
    params = _trained(student, reference, "logistic_model", shapes, device, parameters)
    xs = as_tensor(reference.value("xs_cls"), "xs_cls", (30, 3))
    ys = as_tensor(reference.value("ys_cls"), "ys_cls", (30, 1))
    got = _accuracy(params, xs, ys)
    expected = _accuracy(module_state(reference.value("logistic_model"), "", shapes), xs, ys)
    if got < expected - 1 / 30:
        raise CheckFailed(
            f"the classifier's accuracy is {got:.0%}, the reference reaches {expected:.0%}"
        )


@pytest.mark.grade("logistic_training", points=1)
def test_probabilities_come_from_the_model(student, reference):
    params = module_state(student.value("logistic_model"), "logistic_model", LOGISTIC_SHAPES)
    xs = as_tensor(reference.value("xs_cls"), "xs_cls", (30, 3))
    got = as_tensor(student.value("probabilities"), "probabilities", (30, 1))
    expected = torch.sigmoid(xs @ params["weight"].T + params["bias"])
    assert_close(got, expected, "`probabilities`", rtol=1e-3, atol=1e-5,
                 where="(sigmoid of the trained model's scores on xs_cls)")  # fmt: skip


@figure("manual_mse_gradients", "Your gradients against autograd's", "autograd",
        "your gradient")  # fmt: skip
def gradient_agreement(student, reference, parameters):
    got, expected = [], []
    for case in student.cases("manual_mse_gradients"):
        layer, xs, ys = case.args
        for mine, right in zip(_pair(case), _autograd_mse_gradients(layer, xs, ys), strict=True):
            got += as_tensor(mine, "gradient", tuple(right.shape)).reshape(-1).tolist()
            expected += right.reshape(-1).tolist()
    return agreement(got, expected)


@figure("linear_training", "Linear regression: loss per epoch", "epoch", "MSE", log_y=True)
def linear_history(student, reference, parameters):
    return history_lines(student, reference, "linear_losses")


@figure("logistic_training", "Logistic regression: loss per epoch", "epoch",
        "binary cross-entropy", log_y=True)  # fmt: skip
def logistic_history(student, reference, parameters):
    return history_lines(student, reference, "logistic_losses")
