"""Verdicts of the course's checks on answers computed here, without kernels: honest answers in
the styles students write keep every point, made-up work earns none, and the message names it."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from grader.check import NotebookRun
from grader.expect import CheckFailed
from grader.extract import CaseResult, CellOutcome, RunData
from grader.extract import _kernel_argument as kernel_argument

ROOT = Path(__file__).resolve().parent.parent


def checks_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"verdicts_{name}", ROOT / "checks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TANH = checks_module("05_nonlinear_regression")
GRADIENTS = checks_module("04_autodiff_regression")


def by_hand_student(
    checks: ModuleType, grade_id: str, answer: Callable[..., Any], seed: int
) -> NotebookRun:
    """A run whose function `answer` answered the grader's calls of `checks` (those drawn with
    `seed`), called here as the kernel calls it."""
    parameters = {"seed": 1}
    (call,) = checks.calls(parameters, np.random.default_rng(seed))
    cases = [CaseResult(args, {}, answer(*map(kernel_argument, args))) for args in call.cases]
    cells = {grade_id: CellOutcome(grade_id, "ok")}
    data = RunData(parameters, {}, {}, {call.function: cases}, {}, cells)
    return NotebookRun(data, grade_id, "student")


def tanh_student(f_prime: Callable[[torch.Tensor], torch.Tensor], seed: int) -> NotebookRun:
    return by_hand_student(TANH, "tanh_derivative", f_prime, seed)


def verdict(check: Callable[[NotebookRun], None], student: NotebookRun) -> str:
    try:
        check(student)
    except CheckFailed as failure:
        return str(failure)
    return "passed"


TANH_CHECKS = (TANH.test_f_prime_matches_autograd, TANH.test_f_prime_is_finite_for_large_inputs)


def central(h: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: (torch.tanh(x + h) - torch.tanh(x - h)) / (2 * h)


def five_point(h: float) -> Callable[[torch.Tensor], torch.Tensor]:
    t = torch.tanh
    return lambda x: (-t(x + 2 * h) + 8 * t(x + h) - 8 * t(x - h) + t(x - 2 * h)) / (12 * h)


def seven_point(h: float) -> Callable[[torch.Tensor], torch.Tensor]:
    t = torch.tanh
    return lambda x: (
        t(x + 3 * h) - 9 * t(x + 2 * h) + 45 * t(x + h) - 45 * t(x - h) + 9 * t(x - 2 * h)
        - t(x - 3 * h)
    ) / (60 * h)  # fmt: skip


def in_float64(h: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """A central difference computed in float64 and returned in the input's dtype."""
    return lambda x: central(h)(x.double()).to(x.dtype)


def sigmoid_form(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(2 * x)
    return 4 * s * (1 - s)


def through_numpy(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(1 - np.tanh(x.detach().numpy()) ** 2)


def stable_exp(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(-2 * x.abs())
    return 4 * e / (1 + e) ** 2


HONEST_F_PRIME = {
    "1 - tanh**2": lambda x: 1 - torch.tanh(x) ** 2,
    "(1 - t)(1 + t)": lambda x: (1 - torch.tanh(x)) * (1 + torch.tanh(x)),
    "1 - t*t": lambda x: 1 - torch.tanh(x) * torch.tanh(x),
    "1 / cosh**2": lambda x: 1 / torch.cosh(x) ** 2,
    "cosh.pow(-2)": lambda x: torch.cosh(x).pow(-2),
    "4 / (e^x + e^-x)**2": lambda x: 4 / (torch.exp(x) + torch.exp(-x)) ** 2,
    "(2 / (e^x + e^-x))**2": lambda x: (2 / (torch.exp(x) + torch.exp(-x))) ** 2,
    "sigmoid form": sigmoid_form,
    "numpy via detach": through_numpy,
    "exp(-2|x|) form": stable_exp,
    "in place": lambda x: torch.tanh(x).pow_(2).neg_().add_(1),
    "2 / (cosh(2x) + 1)": lambda x: 2 / (torch.cosh(2 * x) + 1),
    "tanh from the sigmoid": lambda x: 1 - (2 * torch.sigmoid(2 * x) - 1) ** 2,
}

FINITE_DIFFERENCES = {
    "central, h=1e-5": central(1e-5),
    "central, h=1e-6": central(1e-6),
    "central, h=1e-3": central(1e-3),
    "five-point, h=1e-3": five_point(1e-3),
    "five-point, h=7e-4": five_point(7e-4),
    "seven-point, h=5e-3": seven_point(5e-3),
    "central in float64, h=1e-6": in_float64(1e-6),
    "forward, h=1e-8": lambda x: (torch.tanh(x + 1e-8) - torch.tanh(x)) / 1e-8,
    "formula in float32": lambda x: (1 - torch.tanh(x.float()) ** 2).to(x.dtype),
}


def autograd_table(x: torch.Tensor) -> torch.Tensor:
    """05's notebook's own autograd values on its 100-point grid, interpolated: work read from
    elsewhere rather than derived."""
    grid = torch.linspace(-5.0, 5.0, 100, dtype=torch.float64)
    table = 1 - torch.tanh(grid) ** 2
    values = np.interp(x.double().numpy(), grid.numpy(), table.numpy())
    return torch.from_numpy(values).to(x.dtype).reshape(x.shape)


def test_an_interpolated_table_of_autograd_values_earns_nothing() -> None:
    student = tanh_student(autograd_table, 0)
    verdicts = [verdict(check, student) for check in TANH_CHECKS]
    assert "is wrong" in verdicts[0] and "is wrong" in verdicts[1], verdicts


@pytest.mark.parametrize("name", sorted(HONEST_F_PRIME))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_formulas_for_tanh_prime_keep_every_point(name: str, seed: int) -> None:
    student = tanh_student(HONEST_F_PRIME[name], seed)
    assert [verdict(check, student) for check in TANH_CHECKS] == ["passed", "passed"]


@pytest.mark.parametrize("name", sorted(FINITE_DIFFERENCES))
@pytest.mark.parametrize("seed", [0, 1])
def test_finite_differences_for_tanh_prime_earn_nothing_and_are_named(name: str, seed: int) -> None:
    student = tanh_student(FINITE_DIFFERENCES[name], seed)
    verdicts = [verdict(check, student) for check in TANH_CHECKS]
    assert "passed" not in verdicts, verdicts
    # Close ones are named as what they are; a far one (h=1e-3 in float32) is plainly wrong.
    assert all("finite difference" in v or "is wrong" in v for v in verdicts), verdicts


def trained_history(optimizer: str, batch: int) -> list[float]:
    """The loss history of 05's network trained here, as a student's loop logs it."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1000, 1, generator=generator) * 10
    y = -0.05 * x**2 + 0.5 * x + 2 + torch.randn(1000, 1, generator=generator) * 2
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(1, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
    step = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    opt = step(model.parameters(), lr=0.05 if optimizer == "adam" else 1e-4)
    losses = []
    for _epoch in range(300 * batch // 1000):
        for start in range(0, 1000, batch):
            loss = torch.nn.functional.mse_loss(
                model(x[start : start + batch]), y[start : start + batch]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


@pytest.mark.parametrize(("optimizer", "batch"), [("adam", 1000), ("adam", 100), ("sgd", 1000)])
def test_a_logged_training_history_is_not_taken_for_a_formula(optimizer: str, batch: int) -> None:
    TANH._assert_not_a_formula(trained_history(optimizer, batch))


@pytest.mark.parametrize(
    ("made_up", "kind"),
    [
        (np.linspace(620.0, 4.1, 100), "in equal steps"),
        (np.geomspace(620.0, 4.1, 2000).tolist(), "by a constant ratio"),
        (torch.linspace(620.0, 4.1, 50, dtype=torch.float64).tolist(), "in equal steps"),
        ([620.0] + [4.1] * 99, "through only 2 different values in 100 steps"),
        ([620.0, 50.0] * 5 + [4.1] * 990, "through only 3 different values"),
    ],
)
def test_a_history_made_with_linspace_or_geomspace_is_named(
    made_up: list[float], kind: str
) -> None:
    with pytest.raises(CheckFailed, match=f"{kind}.*written by hand"):
        TANH._assert_not_a_formula(list(made_up))


def gradients_by_differences(
    step: float, dtype: torch.dtype
) -> Callable[[torch.nn.Linear, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """04's manual_mse_gradients by central differences of the loss, computed in `dtype` (a
    central difference of a quadratic is exact: only the precision can give it away)."""

    def gradients(linear: torch.nn.Linear, xs: torch.Tensor, ys: torch.Tensor) -> Any:
        weight, bias = linear.weight.detach().to(dtype), linear.bias.detach().to(dtype)
        inputs, targets = xs.to(dtype), ys.to(dtype)

        def loss(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return ((inputs @ w.T + b - targets) ** 2).mean()

        flat = torch.cat([weight.reshape(-1), bias])
        grads = torch.zeros_like(flat)
        for i in range(len(flat)):
            shift = torch.zeros_like(flat)
            shift[i] = step
            up, down = flat + shift, flat - shift
            k = weight.numel()
            grads[i] = (loss(up[:k].reshape(weight.shape), up[k:])
                        - loss(down[:k].reshape(weight.shape), down[k:])) / (2 * step)  # fmt: skip
        return grads[: weight.numel()].reshape(weight.shape).float(), grads[
            weight.numel() :
        ].float()

    return gradients


def gradients_by_matrices(linear: torch.nn.Linear, xs: torch.Tensor, ys: torch.Tensor) -> Any:
    with torch.no_grad():
        residual = linear(xs) - ys
        return 2 * residual.T @ xs / residual.numel(), 2 * residual.sum(0) / residual.numel()


def gradients_by_einsum(linear: torch.nn.Linear, xs: torch.Tensor, ys: torch.Tensor) -> Any:
    residual = (xs @ linear.weight.T + linear.bias - ys).detach()
    scale = 2 / ys.numel()
    return scale * torch.einsum("nk,nd->kd", residual, xs), scale * residual.sum(dim=0)


def gradients_by_loop(linear: torch.nn.Linear, xs: torch.Tensor, ys: torch.Tensor) -> Any:
    grad_weight, grad_bias = torch.zeros(linear.weight.shape), torch.zeros(linear.bias.shape)
    for x, y in zip(xs, ys, strict=True):
        residual = (linear.weight @ x + linear.bias - y).detach()
        grad_weight += torch.outer(residual, x)
        grad_bias += residual
    return 2 * grad_weight / ys.numel(), 2 * grad_bias / ys.numel()


def gradients_by_numpy(linear: torch.nn.Linear, xs: torch.Tensor, ys: torch.Tensor) -> Any:
    weight, bias = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    residual = xs.numpy() @ weight.T + bias - ys.numpy()
    return (torch.from_numpy(2 * residual.T @ xs.numpy() / residual.size),
            torch.from_numpy(2 * residual.sum(axis=0) / residual.size))  # fmt: skip


HONEST_GRADIENTS = {
    "matrices under no_grad": gradients_by_matrices,
    "einsum": gradients_by_einsum,
    "loop over the examples": gradients_by_loop,
    "numpy via detach": gradients_by_numpy,
}
DIFFERENCED_GRADIENTS = {
    "float64, h=1": gradients_by_differences(1.0, torch.float64),
    "float64, h=1e-3": gradients_by_differences(1e-3, torch.float64),
    "float32, h=1e-2": gradients_by_differences(1e-2, torch.float32),
}


@pytest.mark.parametrize("name", sorted(HONEST_GRADIENTS))
@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_from_the_formulas_keep_the_points(name: str, seed: int) -> None:
    student = by_hand_student(GRADIENTS, "manual_mse_gradients", HONEST_GRADIENTS[name], seed)
    assert verdict(GRADIENTS.test_manual_gradients_match_autograd, student) == "passed"


@pytest.mark.parametrize("name", sorted(DIFFERENCED_GRADIENTS))
def test_gradients_from_differences_of_the_loss_lose_the_points(name: str) -> None:
    student = by_hand_student(GRADIENTS, "manual_mse_gradients", DIFFERENCED_GRADIENTS[name], 0)
    message = verdict(GRADIENTS.test_manual_gradients_match_autograd, student)
    assert "is wrong" in message, message
    # In float64 only the weights of 1e20 tell: there the message says why.
    assert "float64" not in name or "lose a finite-difference step" in message, message
