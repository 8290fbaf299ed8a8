"""Assertions for check authors, with messages a student can act on.

Each helper raises `CheckFailed` whose message is shown to the student as it is, e.g.
"dℓ/db is off by a factor of 2: got 0.61, expected 1.22 at x=[0.3, 0.9], y=1.4".
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from grader.check import CheckFailed
from grader.extract import ROUTES, TAMPERING, CaseResult, ModuleState, Unsupported

__all__ = [
    "CheckFailed",
    "as_float_list",
    "as_tensor",
    "assert_close",
    "assert_decreasing",
    "assert_finite",
    "assert_history_follows_reference",
    "assert_length",
    "assert_same_history",
    "by_hand_cases",
    "fmt",
    "module_state",
    "tolerance",
]

# Factors that point at a classic mistake, and how to name them.
_TELLING_FACTORS = {
    2.0: "2",
    0.5: "1/2",
    -1.0: "-1",
    4.0: "4",
    0.25: "1/4",
    -2.0: "-2",
    -0.5: "-1/2",
}


def tolerance(
    device: torch.device | str, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """(rtol, atol) for comparing results computed in `dtype` on `device`.

    float64 is compared tightly, float32 allows for summation order, and on CUDA (TF32 matmuls,
    nondeterministic reductions) the bounds are wider still.
    """
    if dtype == torch.float64:
        return 1e-7, 1e-9
    if torch.device(device).type == "cuda":
        return 5e-3, 1e-4
    return 1e-4, 1e-6


def as_tensor(value: Any, name: str, shape: Sequence[int] | None = None) -> torch.Tensor:
    """`value` as a float64 CPU tensor, checked to hold numbers (and `shape`, if given).

    A value with the right number of elements but another layout ((1, 2) for (2,)) is accepted
    and reshaped: the layout is the student's choice unless a check says otherwise.
    """
    if isinstance(value, (Unsupported, ModuleState)) or value is None or isinstance(value, str):
        kind = value.type_name if isinstance(value, (Unsupported, ModuleState)) else type(value)
        raise CheckFailed(f"`{name}` should hold numbers, but it is {_kind(kind)}")
    try:
        tensor = torch.as_tensor(np.asarray(_numbers(value), dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed(f"`{name}` should hold numbers, but it is {_kind(type(value))}") from None
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        if tensor.numel() != int(np.prod(shape)):
            raise CheckFailed(
                f"`{name}` should have shape {tuple(shape)}, but it has shape {tuple(tensor.shape)}"
            )
        tensor = tensor.reshape(tuple(shape))
    return tensor


def _numbers(value: Any) -> Any:
    """Nested lists of plain numbers from tensors (even ones that require grad), arrays, lists."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    if isinstance(value, (list, tuple)):
        return [_numbers(item) for item in value]
    return value


def as_float_list(value: Any, name: str) -> list[float]:
    """A loss history as a list of floats (a list, array or 1-d tensor is accepted)."""
    tensor = as_tensor(value, name)
    if tensor.dim() > 1:
        tensor = tensor.reshape(-1)
    if tensor.dim() == 0:
        raise CheckFailed(f"`{name}` should be a list with one number per step, not one number")
    return [float(item) for item in tensor.tolist()]


def assert_finite(value: torch.Tensor, what: str, where: str = "") -> None:
    """Fail when `value` holds NaN or infinity."""
    bad = ~torch.isfinite(value)
    if bool(bad.any()):
        index = int(bad.reshape(-1).nonzero()[0])
        kind = "NaN" if bool(torch.isnan(value.reshape(-1)[index])) else "infinity"
        raise CheckFailed(f"{what} is {kind} at element {index}{_at(where)}")


def assert_close(
    got: torch.Tensor,
    expected: torch.Tensor,
    what: str,
    *,
    rtol: float,
    atol: float,
    where: str = "",
) -> None:
    """Fail unless `got` matches `expected` elementwise within the tolerances."""
    got = got.detach().cpu().double()
    expected = (
        expected.detach().cpu().double().reshape(got.shape)
        if (expected.numel() == got.numel())
        else expected.detach().cpu().double()
    )
    if got.shape != expected.shape:
        raise CheckFailed(
            f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}{_at(where)}"
        )
    assert_finite(got, what, where)
    if torch.allclose(got, expected, rtol=rtol, atol=atol):
        return
    factor = _constant_factor(got, expected)
    if factor is not None:
        raise CheckFailed(
            f"{what} is off by a factor of {factor}: got {fmt(got)}, expected {fmt(expected)}"
            f"{_at(where)}"
        )
    raise CheckFailed(f"{what} is wrong: got {fmt(got)}, expected {fmt(expected)}{_at(where)}")


def assert_decreasing(losses: list[float], what: str = "the loss", *, slack: float = 1e-6) -> None:
    """Fail when the loss goes up from one step to the next (beyond rounding)."""
    for step, (before, after) in enumerate(pairwise(losses), start=1):
        if not np.isfinite(after):
            raise CheckFailed(
                f"{what} became {after} at step {step + 1}: the updates diverge (learning rate "
                "too large, or the step has the wrong sign?)"
            )
        if after > before + slack * max(1.0, abs(before)):
            raise CheckFailed(
                f"{what} increased after step {step} (from {before:.6g} to {after:.6g}): "
                "the step has the wrong sign, or the learning rate is too large?"
            )


def assert_length(values: Sequence[Any], expected: int, what: str, unit: str = "step") -> None:
    """Fail unless a history has one entry per step."""
    if len(values) != expected:
        raise CheckFailed(
            f"{what} should have {expected} entries (one per {unit}), it has {len(values)}"
        )


def fmt(value: Any, limit: int = 6) -> str:
    """A short, readable rendering of numbers for messages."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
        if value.numel() == 1:
            return f"{float(value.reshape(-1)[0]):.6g}"
        items = [f"{float(item):.4g}" for item in value.reshape(-1)[:limit]]
        more = ", …" if value.numel() > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _constant_factor(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    mask = expected.abs() > 1e-8
    if not bool(mask.any()):
        return None
    ratios = got[mask] / expected[mask]
    for factor, label in _TELLING_FACTORS.items():
        if torch.allclose(ratios, torch.full_like(ratios, factor), rtol=1e-3, atol=1e-6):
            return label
    return None


def _at(where: str) -> str:
    return f" {where}" if where else ""


def _kind(kind: Any) -> str:
    name = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    return "None" if name == "NoneType" else f"a {name}"


def module_state(
    value: Any, name: str, shapes: dict[str, tuple[int, ...]]
) -> dict[str, torch.Tensor]:
    """The parameters of a model that crossed the boundary, checked against `shapes`."""
    if not isinstance(value, ModuleState):
        kind = value.type_name if isinstance(value, Unsupported) else type(value)
        raise CheckFailed(f"`{name}` should be a torch model (nn.Module), but it is {_kind(kind)}")
    missing = sorted(set(shapes) - set(value.state))
    if missing:
        raise CheckFailed(
            f"`{name}` has no parameter {missing[0]!r}: keep the model's architecture"
        )
    tensors = {}
    for key, shape in shapes.items():
        tensor = value.state[key]
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            raise CheckFailed(f"`{name}`'s {key} should have shape {shape}: keep the architecture")
        tensors[key] = tensor.detach().double()
    return tensors


def assert_history_follows_reference(
    student: Any, reference: Any, name: str, *, rtol: float, atol: float
) -> list[float]:
    """Read the loss history `name` of both runs; fail unless the student's follows the reference's.

    Returns the student's history.
    """
    history = as_float_list(student.value(name), name)
    expected = as_float_list(reference.value(name), name)
    assert_same_history(history, expected, f"`{name}`", rtol=rtol, atol=atol)
    return history


def assert_same_history(
    got: list[float], expected: list[float], what: str, *, rtol: float, atol: float
) -> None:
    """Fail unless a loss history follows the reference's, step by step (same start)."""
    assert_length(got, len(expected), what)
    for step, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        if not abs(mine - theirs) <= atol + rtol * abs(theirs):
            rose = step > 0 and mine > got[step - 1]
            hint = (
                "it went up: is the step's sign wrong, the learning rate too large, or are "
                "gradients piling up without zero_grad?"
                if rose
                else "check the loss, the learning rate, zero_grad and the order of the steps"
            )
            raise CheckFailed(
                f"{what} departs from the reference training at step {step}: got {mine:.6g}, "
                f"expected {theirs:.6g} from the same start and data ({hint})"
            )


# What to do instead, by forbidden route.
_BY_HAND = {
    "mse_loss": "write the mean of the squared differences yourself",
    TAMPERING: "leave torch's internals alone and derive it by hand, from the formulas",
}


def by_hand_cases(run: Any, function: str) -> list[CaseResult]:
    """The grader's calls of the "by hand" function `function` in `run`, once none of them took a
    forbidden route (`Call.forbidden`): every check of the cell reads its cases through this, so
    that work handed to the library (by any route) earns none of the cell's points.
    """
    cases: list[CaseResult] = run.cases(function)
    for case in cases:
        if case.forbidden_calls or case.forbidden_routes:
            raise CheckFailed(_forbidden_route_message(function, case))
    return cases


def _forbidden_route_message(function: str, case: CaseResult) -> str:
    route, evidence = next(iter(case.forbidden_routes.items()), ("", ""))
    seen = f"; the grader saw {evidence}" if evidence else ""
    advice = _BY_HAND.get(route, "derive it by hand, from the formulas")
    if route == TAMPERING:
        return f"`{function}` ran while {ROUTES[TAMPERING]}{seen}: {advice}"
    reached = ROUTES.get(route, "a function it must not use")
    return f"`{function}` reached {reached}{seen}: {advice}"
