"""Assertions for check authors, with messages a student can act on.

Each helper raises `CheckFailed` whose message is shown to the student as it is, e.g.
"dℓ/db is off by a factor of 2: got 0.61, expected 1.22 at x=[0.3, 0.9], y=1.4".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from grader.check import CheckFailed
from grader.extract import ROUTES, TAMPERING, CaseResult, ModuleState, Unsupported

__all__ = [
    "CheckFailed",
    "HistoryRules",
    "Mistake",
    "as_float_list",
    "as_tensor",
    "assert_close",
    "assert_decreasing",
    "assert_finite",
    "assert_history_follows_reference",
    "assert_history_of_model",
    "assert_length",
    "assert_same_history",
    "assert_tensor_like",
    "by_hand_cases",
    "constant_factor",
    "fmt",
    "fmt_apart",
    "module_state",
    "name_factor",
    "tolerance",
]

# Factors of one number are named only when they are this simple: any other wrong number is a
# "factor" of the right one, and naming it would send the student looking for one.
_SIMPLE_FACTORS = frozenset({2.0, 0.5, -1.0, 4.0, 0.25, -2.0, -0.5})
FACTOR_RTOL = 1e-3
"""How closely every ratio got/expected must agree for a difference to be named a factor."""


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


def as_tensor(
    value: Any, name: str, shape: Sequence[int] | None = None, *, exact: bool = False
) -> torch.Tensor:
    """`value` as a float64 CPU tensor, checked to hold numbers (and `shape`, if given).

    A value with the right number of elements but another layout ((1, 2) for (2,)) is accepted
    and reshaped: the layout is the student's choice unless the text states it (`exact`).
    """
    if isinstance(value, (Unsupported, ModuleState)) or value is None or isinstance(value, str):
        kind = value.type_name if isinstance(value, (Unsupported, ModuleState)) else type(value)
        raise CheckFailed(f"`{name}` should hold numbers, but it is {_kind(kind)}")
    try:
        tensor = torch.as_tensor(np.asarray(_numbers(value), dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise CheckFailed(f"`{name}` should hold numbers, but it is {_kind(type(value))}") from None
    if shape is not None and tuple(tensor.shape) != tuple(shape):
        if exact or tensor.numel() != int(np.prod(shape)):
            raise CheckFailed(
                f"`{name}` should have shape {tuple(shape)}, but it has shape {tuple(tensor.shape)}"
            )
        tensor = tensor.reshape(tuple(shape))
    return tensor


def assert_tensor_like(
    value: Any, name: str, shape: Sequence[int], dtype: torch.dtype | None = None
) -> torch.Tensor:
    """`value` as a float64 tensor, once it is a torch tensor of exactly `shape` (and `dtype`).

    For results whose type, shape or dtype the text prescribes ("a 0-dim tensor", "the same shape
    and dtype as `x`").
    """
    if not isinstance(value, torch.Tensor):
        kind = value.type_name if isinstance(value, (Unsupported, ModuleState)) else type(value)
        raise CheckFailed(f"`{name}` should be a torch tensor, but it is {_kind(kind)}")
    if dtype is not None and value.dtype != dtype:
        raise CheckFailed(
            f"`{name}` should have dtype {_dtype(dtype)} (the input's), but it has "
            f"{_dtype(value.dtype)}: compute in the input's dtype, without converting"
        )
    if tuple(value.shape) != tuple(shape):
        what = "a 0-dim tensor (one number)" if not shape else f"shape {tuple(shape)}"
        raise CheckFailed(f"`{name}` should be {what}, but it has shape {tuple(value.shape)}")
    return as_tensor(value, name)


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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
    factors: Mapping[float, str] | None = None,
) -> None:
    """Fail unless `got` matches `expected` elementwise within the tolerances.

    A constant factor between them is named ("off by a factor of 30"); `factors` says what some
    factors mean here ({30.0: "N = 30: a sum where the mean is asked for?"}).
    """
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
    mine, theirs = fmt_apart(got, expected)
    values = f"got {mine}, expected {theirs}{_largest_difference(got, expected)}{_at(where)}"
    factor = constant_factor(got, expected, factors)
    if factor is not None:
        raise CheckFailed(f"{what} is off by a factor of {name_factor(factor, factors)}: {values}")
    raise CheckFailed(f"{what} is wrong: {values}")


def _largest_difference(got: torch.Tensor, expected: torch.Tensor) -> str:
    """Where the worst element is, when the rendering may not show it."""
    if got.numel() <= 6:
        return ""
    index = int((got - expected).abs().reshape(-1).argmax())
    mine, theirs = fmt_apart(got.reshape(-1)[index], expected.reshape(-1)[index])
    return f" (largest difference at element {index}: {mine} against {theirs})"


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


def fmt(value: Any, limit: int = 6, digits: int = 4) -> str:
    """A short, readable rendering of numbers for messages (`digits` significant digits)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
        if value.numel() == 1:
            return f"{float(value.reshape(-1)[0]):.{max(digits, 6)}g}"
        items = [f"{float(item):.{digits}g}" for item in value.reshape(-1)[:limit]]
        more = ", …" if value.numel() > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, float):
        return f"{value:.{max(digits, 6)}g}"
    return str(value)


def fmt_apart(got: Any, expected: Any, limit: int = 6) -> tuple[str, str]:
    """Renderings of two different values with enough digits that they read differently."""
    mine, theirs = fmt(got, limit), fmt(expected, limit)
    for digits in range(5, 18):
        if mine != theirs:
            break
        mine, theirs = fmt(got, limit, digits), fmt(expected, limit, digits)
    return mine, theirs


def constant_factor(
    got: torch.Tensor, expected: torch.Tensor, factors: Mapping[float, str] | None = None
) -> float | None:
    """The number k with got = k * expected elementwise, if there is one (and it is not 1).

    A single number is always some multiple of another: for one element only simple factors
    (2, 1/2, -1, ...) and the `factors` the check names count.
    """
    got, expected = got.double().reshape(-1), expected.double().reshape(-1)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    nonzero = expected.abs() > 1e-12 * scale
    if scale == 0 or bool((got[~nonzero].abs() > 1e-9 * scale).any()):
        return None
    ratios = got[nonzero] / expected[nonzero]
    k = float(ratios.median())
    if not bool(((ratios - k).abs() <= FACTOR_RTOL * abs(k)).all()):
        return None
    if k == 0 or abs(k - 1) <= FACTOR_RTOL:
        return None
    if int(nonzero.sum()) < 2 and not _is_named(k, {*_SIMPLE_FACTORS, *(factors or {})}):
        return None
    return k


def _is_named(k: float, named: set[float]) -> bool:
    return any(abs(k - value) <= FACTOR_RTOL * abs(value) for value in named)


def name_factor(k: float, factors: Mapping[float, str] | None = None) -> str:
    """k as a student reads it ("30", "1/8", "-2", "1.372"), with what it means here."""
    near = Fraction(k).limit_denominator(1000)
    # n, 1/n and fractions of small terms read as what they are; 59/43 does not
    small = near.denominator <= 12 or abs(near.numerator) == 1
    simple = abs(float(near) - k) <= 1e-4 * abs(k) and abs(near.numerator) < 1000 and small
    text = str(near) if simple else f"{k:.4g}"
    for value, meaning in (factors or {}).items():
        if abs(k - value) <= FACTOR_RTOL * abs(value):
            return f"{text} ({meaning})"
    return text


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


@dataclass(frozen=True)
class Mistake:
    """A typical mistake of a training loop and the history it leads to.

    The checks replay the prescribed loop with the mistake in the grader, from the trusted data
    (see `grader.replay`); a student's history that matches the replay is named by its `cause`.
    """

    cause: str
    history: tuple[float, ...]


@dataclass(frozen=True)
class HistoryRules:
    """What the text prescribes about a history, for naming how a student's departs from it.

    `start`: where the loop starts ("`params_init`"); `logged`: when each entry is taken
    ("before the update"); `stop`: when the loop ends; `factors`: what a constant factor between
    the student's entries and the reference's means here ({30.0: "the sum over the N = 30 ..."}).
    """

    start: str = "the prescribed starting point"
    logged: str = ""
    stop: str = ""
    factors: Mapping[float, str] = field(default_factory=dict)


Mistakes = Sequence[Mistake] | Callable[[], Sequence[Mistake]]
"""Replayed mistakes, or a function that replays them: called only once a history departs."""

REPLAY_STEPS = 30
"""Steps of a replayed mistake compared with a history: later ones drift apart in float32."""
REPLAY_RTOL = 2e-3


def assert_history_follows_reference(
    student: Any,
    reference: Any,
    name: str,
    *,
    rtol: float,
    atol: float,
    rules: HistoryRules | None = None,
    mistakes: Mistakes = (),
) -> list[float]:
    """Read the loss history `name` of both runs; fail unless the student's follows the reference's.

    Returns the student's history.
    """
    history = as_float_list(student.value(name), name)
    expected = as_float_list(reference.value(name), name)
    assert_same_history(
        history, expected, f"`{name}`", rtol=rtol, atol=atol, rules=rules, mistakes=mistakes
    )
    return history


def assert_same_history(
    got: list[float],
    expected: list[float],
    what: str,
    *,
    rtol: float,
    atol: float,
    rules: HistoryRules | None = None,
    mistakes: Mistakes = (),
) -> None:
    """Fail unless a loss history follows the reference's step by step, naming the cause.

    The causes tried, in order: a constant factor on every entry, one of the replayed `mistakes`,
    entries logged one update too early or too late, another start, another stop rule.
    """
    rules = rules or HistoryRules()
    step = _first_departure(got, expected, rtol, atol)
    if step is None and len(got) == len(expected):
        return
    cause = _named_cause(got, expected, rules, mistakes, rtol, atol)
    if not got:
        raise CheckFailed(f"{what} is empty: it should hold one entry per step of the loop")
    if step is None:  # one is a prefix of the other: only the stop differs
        longer = "runs on longer" if len(got) > len(expected) else "stops sooner"
        stop = f" ({rules.stop})" if rules.stop else ""
        raise CheckFailed(
            f"{what} has {len(got)} entries where the reference has {len(expected)}, and they "
            f"agree up to there: your loop {longer} than the stop rule says{stop}"
        )
    mine, theirs = fmt_apart(got[step], expected[step])
    if step == 0:
        raise CheckFailed(
            f"{what} starts at {mine}, but the reference starts at {theirs} on the same data "
            f"({cause or _start_hint(rules)})"
        )
    raise CheckFailed(
        f"{what} departs from the reference training at step {step}: got {mine}, expected "
        f"{theirs} from the same start and data ({cause or _departure_hint(got, step)})"
    )


def _first_departure(
    got: list[float], expected: list[float], rtol: float, atol: float
) -> int | None:
    for step, (mine, theirs) in enumerate(zip(got, expected, strict=False)):
        if not abs(mine - theirs) <= atol + rtol * abs(theirs):
            return step
    return None


def _agree(got: Sequence[float], expected: Sequence[float], rtol: float, atol: float) -> bool:
    """Whether the common steps (at least two) agree within the tolerances."""
    count = min(len(got), len(expected))
    return (
        count >= 2
        and _first_departure(list(got[:count]), list(expected[:count]), rtol, atol) is None
    )


def _named_cause(
    got: list[float],
    expected: list[float],
    rules: HistoryRules,
    mistakes: Mistakes,
    rtol: float,
    atol: float,
) -> str:
    """What the student's history is, when it is one of the known departures; else ""."""
    count = min(len(got), len(expected))
    factor = constant_factor(torch.tensor(got[:count]), torch.tensor(expected[:count]))
    if factor is not None and count >= 2:
        return f"every entry is the reference's times {name_factor(factor, rules.factors)}"
    first = got[0] / expected[0] if count and expected[0] else 1.0
    if _is_named(first, set(rules.factors)):
        return f"the first entry is the reference's times {name_factor(first, rules.factors)}"
    loose = max(rtol, REPLAY_RTOL)
    for mistake in mistakes() if callable(mistakes) else mistakes:
        steps = min(REPLAY_STEPS, len(mistake.history))
        if len(got) >= steps and _agree(got[:steps], mistake.history[:steps], loose, atol):
            return mistake.cause
    logged = f": each entry should be {rules.logged}" if rules.logged else ""
    if _agree(got, expected[1:], rtol, atol):
        return f"each entry is the reference's next one: it is logged one update too late{logged}"
    if _agree(got[1:], expected, rtol, atol):
        return (
            f"each entry is the reference's previous one: it is logged one update too early{logged}"
        )
    return ""


def _start_hint(rules: HistoryRules) -> str:
    return (
        f"the first entry is taken at the start: does your loop start from {rules.start}, "
        "and is nothing trained before it?"
    )


def _departure_hint(got: list[float], step: int) -> str:
    if got[step] > got[step - 1]:
        return (
            "it went up: is the step's sign wrong, the learning rate too large, or are gradients "
            "piling up without zero_grad?"
        )
    return "check the loss, the learning rate, zero_grad and the order of the steps"


def assert_history_of_model(
    history: list[float],
    what: str,
    *,
    start: float,
    end: float,
    logged_after: bool = False,
    length: int | None = None,
    min_length: int = 3,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    unit: str = "step",
    start_rtol: float | None = None,
) -> None:
    """Fail unless `history` is a plausible training history of the model the student returned.

    `start` is the loss of the untrained model and `end` the returned model's loss, both computed
    by the grader from the trusted data. The history must have its length (or `min_length`), move,
    start at `start` and end where the returned model is: its last entry is `end` when entries
    are logged after each update, else within a few of its last steps of `end`. `start_rtol`:
    how far the first entry may be from `start` where the loss may be taken on part of the data.
    """
    if length is not None:
        assert_length(history, length, what, unit)
    elif len(history) < min_length:
        raise CheckFailed(
            f"{what} has {len(history)} entries: it should hold the loss of every step of the "
            "training, as the loop computes it"
        )
    assert_finite(torch.tensor(history), what)
    if max(history) - min(history) <= atol + rtol * max(abs(v) for v in history):
        raise CheckFailed(
            f"every entry of {what} is {fmt(history[0])}: the loss of a model that trains changes "
            "from step to step (is the history written by hand?)"
        )
    if not abs(history[0] - start) <= atol + (start_rtol or rtol) * abs(start):
        mine, theirs = fmt_apart(history[0], start)
        raise CheckFailed(
            f"{what} starts at {mine}, but the untrained model's loss on the notebook's data is "
            f"{theirs}: the first entry is the loss before any update"
        )
    recent = history[-6:]
    reach = 0.0 if logged_after else 3 * max(abs(a - b) for a, b in pairwise(recent))
    if not abs(history[-1] - end) <= reach + atol + rtol * abs(end):
        mine, theirs = fmt_apart(history[-1], end)
        raise CheckFailed(
            f"{what} ends at {mine}, but the model you return has loss {theirs} on the notebook's "
            "data (recomputed by the grader): the history must be the training of that model "
            "(was it changed after the loop, or the history written by hand?)"
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
