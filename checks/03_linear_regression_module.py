"""Checks for 03_linear_regression_module: a hand-written MSE and an SGD training loop."""

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
    by_hand_cases,
    fmt,
    module_state,
    tolerance,
)
from grader.extract import LIBRARY_MSE, Call
from grader.figures import agreement, figure, history_lines, line, points

VALUES = ["model", "costs", "x", "y"]
SHAPES = {"linear.weight": (1, 1), "linear.bias": (1,)}

# Follow-through credit: the TO DO cells that use an earlier TO DO cell's work, with the name
# they use. The training loop's cost is `mse_cost`.
DEPENDS_ON = {"training_loop": {"mse_cost": "mse_cost"}}


def calls(parameters: dict[str, Any], rng: np.random.Generator) -> list[Call]:
    cases = []
    for shape in [(8, 1), (5,), (3, 4), (1, 1)]:
        yhat = torch.tensor(rng.normal(size=shape), dtype=torch.float32, requires_grad=True)
        cases.append((yhat, torch.tensor(rng.normal(size=shape), dtype=torch.float32)))
    return [Call("mse_cost", cases, forbidden=LIBRARY_MSE)]


def _costs(student) -> list[tuple[Any, Any, Any]]:
    results = []
    for case in by_hand_cases(student, "mse_cost"):
        yhat, y = case.args
        if case.error:
            raise CheckFailed(f"mse_cost(yhat, y) raised {case.error} for shape {tuple(y.shape)}")
        results.append((yhat, y, case.output))
    return results


@pytest.mark.grade("mse_cost", points=2)
def test_mse_cost_matches_the_definition(student):
    for yhat, y, output in _costs(student):
        got = as_tensor(output, "mse_cost(yhat, y)")
        if got.numel() != 1:
            raise CheckFailed(
                f"mse_cost should return one number, it returned shape {tuple(got.shape)}"
            )
        expected = ((yhat.detach().double() - y.double()) ** 2).mean()
        ratio = float(got.reshape(-1)[0] / expected)
        if y.numel() > 1 and abs(ratio - y.numel()) < 1e-3 * y.numel():
            raise CheckFailed(
                f"mse_cost returns the sum of the squared errors ({fmt(got)}), not their mean "
                f"({fmt(expected)}) for {y.numel()} values"
            )
        assert_close(got.reshape(()), expected, "mse_cost(yhat, y)", rtol=1e-5, atol=1e-7,
                     where=f"for yhat={fmt(yhat)}, y={fmt(y)}")  # fmt: skip


@pytest.mark.grade("mse_cost", points=1)
def test_mse_cost_is_a_differentiable_tensor(student):
    for _, _, output in _costs(student):
        if not isinstance(output, torch.Tensor):
            raise CheckFailed(
                f"mse_cost returned a {type(output).__name__}: return a torch tensor, so that "
                "cost.backward() works"
            )
        if not output.requires_grad:
            raise CheckFailed(
                "mse_cost's result is cut off from the graph (no gradient flows back to yhat): "
                "avoid .item(), .detach(), numpy and torch.no_grad() inside it"
            )


@pytest.mark.grade("training_loop", points=2)
def test_training_matches_reference(student, reference, device):
    rtol, atol = tolerance(device)
    assert_history_follows_reference(student, reference, "costs", rtol=10 * rtol, atol=10 * atol)
    got = module_state(student.value("model"), "model", SHAPES)
    want = module_state(reference.value("model"), "model", SHAPES)
    for key in SHAPES:
        assert_close(got[key], want[key], f"the trained {key}", rtol=10 * rtol, atol=10 * atol,
                     where="(SGD from the same initial model)")  # fmt: skip


@pytest.mark.grade("training_loop", points=1)
def test_training_lowers_the_cost(student):
    costs = as_float_list(student.value("costs"), "costs")
    if len(costs) < 2 or not costs[-1] < costs[0]:
        raise CheckFailed("the cost should go down over the epochs: is the model trained?")
    module_state(student.value("model"), "model", SHAPES)


@figure("mse_cost", "Your mse_cost against the definition", "mean of squared differences",
        "mse_cost(yhat, y)")  # fmt: skip
def mse_agreement(student, reference, parameters):
    got, expected = [], []
    for yhat, y, output in _costs(student):
        got.append(float(as_tensor(output, "mse_cost(yhat, y)").reshape(-1)[0]))
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
