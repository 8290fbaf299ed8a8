"""Checks for 03_linear_regression_module: a hand-written MSE and an SGD training loop."""

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
    constant_factor,
    fmt,
    module_state,
    tolerance,
)
from grader.extract import LIBRARY_MSE, Call
from grader.figures import agreement, figure, history_lines, line, points
from grader.replay import descent_mistakes, linear_descent, seeded_linear, with_ones

VALUES = ["model", "costs", "x", "y", "learning_rate", "epochs"]
SHAPES = {"linear.weight": (1, 1), "linear.bias": (1,)}
RULES = HistoryRules(
    start="the untrained `model` (the one made above, with no new model or optimizer)",
    logged="the loss computed in each epoch, before that epoch's update",
    stop="`epochs` epochs, one entry each",
    factors={8.0: "the sum over the 8 points, not their mean?"},
)

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. The training loop's cost is `mse_cost`.
DEPENDS_ON = {"training_loop": {"mse_cost": "mse_cost"}}


def calls(parameters: dict[str, Any], rng: np.random.Generator) -> list[Call]:
    cases = []
    for shape in [(8, 1), (5,), (3, 4), (1, 1)]:
        yhat = torch.tensor(rng.normal(size=shape), dtype=torch.float32, requires_grad=True)
        cases.append((yhat, torch.tensor(rng.normal(size=shape), dtype=torch.float32)))
    return [Call("mse_cost", cases, forbidden=LIBRARY_MSE, input_gradients=True)]


def _costs(student) -> list[Any]:
    results = []
    for case in by_hand_cases(student, "mse_cost"):
        y = case.args[1]
        if case.error:
            raise CheckFailed(f"mse_cost(yhat, y) raised {case.error} for shape {tuple(y.shape)}")
        results.append(case)
    return results


def _meanings(y: torch.Tensor) -> dict[float, str]:
    """What a constant factor between the student's cost and the mean means for this `y`."""
    meanings = {float(y.numel()): f"the sum over the {y.numel()} elements, not their mean"}
    if y.dim() > 1 and len(y) != y.numel():
        meanings[y.numel() / len(y)] = (
            f"divided by len(y) = {len(y)}, the rows, instead of y.numel() = {y.numel()}, "
            "all the elements"
        )
    return meanings


@pytest.mark.grade("mse_cost", points=2)
def test_mse_cost_matches_the_definition(student):
    for case in _costs(student):
        yhat, y = case.args
        got = as_tensor(case.output, "mse_cost(yhat, y)")
        if got.numel() != 1:
            raise CheckFailed(
                f"mse_cost should return one number, it returned shape {tuple(got.shape)}"
            )
        expected = ((yhat.detach().double() - y.double()) ** 2).mean()
        assert_close(got.reshape(()), expected, "mse_cost(yhat, y)", rtol=1e-5, atol=1e-7,
                     where=f"for yhat={fmt(yhat)}, y={fmt(y)} of shape {tuple(y.shape)}",
                     factors=_meanings(y))  # fmt: skip


@pytest.mark.grade("mse_cost", points=1)
def test_mse_cost_is_a_differentiable_tensor(student):
    for case in _costs(student):
        yhat, y = case.args
        assert_tensor_like(case.output, "mse_cost(yhat, y)", ())
        (flowed, _) = case.input_gradients or (None, None)
        if not isinstance(flowed, torch.Tensor):
            raise CheckFailed(
                "no gradient flows back from mse_cost's result to yhat: it is cut off from the "
                "graph (avoid .item(), .detach(), numpy, torch.tensor(...) and torch.no_grad() "
                "inside it)"
            )
        expected = 2 * (yhat.detach().double() - y.double()) / y.numel()
        got = as_tensor(flowed, "the gradient")
        # a scaled squared error (the sum, say) is the value check's business, not this one's
        factor = constant_factor(got, expected)
        if factor is not None and factor > 0:
            continue
        assert_close(got, expected, "the gradient of mse_cost with respect to yhat", rtol=1e-4,
                     atol=1e-6, where=f"for shape {tuple(y.shape)}")  # fmt: skip


def _data(reference) -> tuple[np.ndarray, np.ndarray]:
    x = as_tensor(reference.value("x"), "x").reshape(-1, 1).numpy()
    return with_ones(x), as_tensor(reference.value("y"), "y").reshape(-1).numpy()


def _mistakes(reference, parameters: dict[str, Any]):
    features, targets = _data(reference)
    weight, bias = seeded_linear(int(parameters["seed"]), (1, 1))
    start = np.concatenate([weight.reshape(-1), bias])
    rate, epochs = float(reference.value("learning_rate")), int(reference.value("epochs"))

    def replay(factor: float, accumulate: bool) -> list[float]:
        return linear_descent(features, targets, start, rate * factor, epochs,
                              accumulate=accumulate)  # fmt: skip

    reference_costs = as_float_list(reference.value("costs"), "costs")
    return descent_mistakes(replay, reference_costs, len(targets))


def _trained_history(student, reference, parameters, device) -> list[float]:
    """`costs`, once it follows the reference's and ends where the returned model is (its cost
    recomputed on the reference's data)."""
    rtol, atol = tolerance(device)
    mistakes = functools.partial(_mistakes, reference, parameters)
    costs = assert_history_follows_reference(student, reference, "costs", rtol=10 * rtol,
                                             atol=10 * atol, rules=RULES,
                                             mistakes=mistakes)  # fmt: skip
    start = as_float_list(reference.value("costs"), "costs")[0]
    assert_history_of_model(costs, "`costs`", start=start, end=_model_cost(student, reference),
                            length=int(reference.value("epochs")), rtol=10 * rtol,
                            atol=10 * atol, unit="epoch")  # fmt: skip
    return costs


@pytest.mark.grade("training_loop", points=2)
def test_training_matches_reference(student, reference, parameters, device):
    _trained_history(student, reference, parameters, device)
    rtol, atol = tolerance(device)
    got = module_state(student.value("model"), "model", SHAPES)
    want = module_state(reference.value("model"), "model", SHAPES)
    for key in SHAPES:
        assert_close(got[key], want[key], f"the trained {key}", rtol=10 * rtol, atol=10 * atol,
                     where="(SGD from the same initial model)")  # fmt: skip


def _model_cost(run, reference) -> float:
    state = module_state(run.value("model"), "model", SHAPES)
    features, targets = _data(reference)
    params = torch.cat([state["linear.weight"].reshape(-1), state["linear.bias"]]).numpy()
    return float(np.mean((features @ params - targets) ** 2))


@pytest.mark.grade("training_loop", points=1)
def test_training_lowers_the_cost(student, reference, parameters, device):
    costs = _trained_history(student, reference, parameters, device)
    if not costs[-1] < costs[0]:
        raise CheckFailed("the cost should go down over the epochs: is the model trained?")


@figure("mse_cost", "Your mse_cost against the definition", "mean of squared differences",
        "mse_cost(yhat, y)")  # fmt: skip
def mse_agreement(student, reference, parameters):
    got, expected = [], []
    for case in _costs(student):
        yhat, y = case.args
        got.append(float(as_tensor(case.output, "mse_cost(yhat, y)").reshape(-1)[0]))
        expected.append(float(((yhat.detach().double() - y.double()) ** 2).mean()))
    return agreement(got, expected)


@figure("training_loop", "Cost per epoch", "epoch", "mean squared error")
def cost_history(student, reference, parameters):
    return history_lines(student, reference, "costs")


def _fitted_line(run, x: torch.Tensor) -> torch.Tensor:
    state = module_state(run.value("model"), "model", SHAPES)
    return state["linear.weight"].reshape(()) * x + state["linear.bias"].reshape(())


@figure("training_loop", "Your trained line", "x", "y")
def trained_line(student, reference, parameters):
    x = as_tensor(reference.value("x"), "x").reshape(-1)
    return [
        points("data", x, as_tensor(reference.value("y"), "y")),
        line("your model", _fitted_line(student, x), x),
        line("reference model", _fitted_line(reference, x), x, style="dashed"),
    ]
