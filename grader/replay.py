"""Prescribed training loops replayed in the grader, with the typical mistakes of each.

A check that compares a student's loss history with the reference's also replays the loop from
data the grader trusts (the reference run's values and the notebook's parameters), once per
typical mistake. When the student's history is one of these replays, the message names the
mistake ("gradients pile up: zero_grad is missing") instead of only the step where the
histories part. A replay is used only once it reproduces the reference's own history: if the
notebook changed so that it no longer does, messages fall back to the step and the values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from grader.expect import REPLAY_RTOL, REPLAY_STEPS, Mistake, name_factor

Replay = Callable[[float, bool], Sequence[float]]
"""A loop replayed with its steps scaled by a factor, and with gradients piling up or not."""

PILING_UP = (
    "gradients pile up from step to step: `zero_grad()` (or `.grad.zero_()`) is missing or comes "
    "too late, so each step uses the sum of all the gradients so far"
)
FROZEN = (
    "the parameters never change: is the gradient reset between `backward()` and the step, or "
    "the update made to a copy?"
)


def linear_descent(
    features: np.ndarray,
    targets: np.ndarray,
    start: np.ndarray,
    rate: float,
    steps: int,
    *,
    logistic: bool = False,
    accumulate: bool = False,
    stop_below: float | None = None,
) -> list[float]:
    """Full-batch gradient descent on a linear model, the loss logged before each update.

    `features` (N, d) includes a column of ones for a bias; the loss is the mean squared error,
    or the binary cross-entropy of the scores (`logistic`). `stop_below`: stop after the step
    whose loss is below it.
    """
    with np.errstate(all="ignore"):  # the replays of some mistakes diverge: that is their point
        return _descend(features, targets, start, rate, steps, logistic, accumulate, stop_below)


def _descend(
    features: np.ndarray,
    targets: np.ndarray,
    start: np.ndarray,
    rate: float,
    steps: int,
    logistic: bool,
    accumulate: bool,
    stop_below: float | None,
) -> list[float]:
    params = np.array(start, dtype=np.float64)
    pile = np.zeros_like(params)
    history: list[float] = []
    for _ in range(steps):
        scores = features @ params
        if logistic:
            loss = float(np.mean(np.logaddexp(0.0, scores) - targets * scores))
            gradient = features.T @ (1 / (1 + np.exp(-scores)) - targets) / len(targets)
        else:
            loss = float(np.mean((scores - targets) ** 2))
            gradient = 2 * features.T @ (scores - targets) / len(targets)
        history.append(loss)
        if not np.isfinite(loss):
            break
        pile = pile + gradient if accumulate else gradient
        params = params - rate * pile
        if stop_below is not None and loss < stop_below:
            break
    return history


def with_ones(features: np.ndarray) -> np.ndarray:
    """`features` with a column of ones appended, for a model's bias."""
    return np.hstack([features, np.ones((features.shape[0], 1))])


def seeded_linear(seed: int, *layers: tuple[int, int]) -> list[np.ndarray]:
    """The (weight, bias) of each `nn.Linear(n_in, n_out)` a notebook makes after
    `torch.manual_seed(seed)`, in order, without touching the grader's own random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        made = [torch.nn.Linear(n_in, n_out) for n_in, n_out in layers]
    return [p.detach().double().numpy() for layer in made for p in (layer.weight, layer.bias)]


def descent_mistakes(
    replay: Replay, reference: Sequence[float], examples: int = 0, *, piling_up: str = PILING_UP
) -> list[Mistake]:
    """The typical mistakes of a gradient-descent loop, once `replay` reproduces `reference`.

    Gradients piling up (`piling_up` says how, "" where it cannot happen), parameters that never
    move, and steps scaled by a constant factor: a learning rate other than the prescribed one, or
    a loss or gradient scaled, such as a sum over the `examples` where the mean is asked for.
    """
    if not _reproduces(replay(1.0, False), reference):
        return []
    mistakes = [Mistake(FROZEN, tuple(replay(0.0, False)))]
    if piling_up:
        mistakes.append(Mistake(piling_up, tuple(replay(1.0, True))))
    sums = (float(examples), 1 / examples) if examples > 1 else ()
    for factor in (*sums, 2.0, 0.5, 4.0, 0.25, 10.0, 0.1, -1.0):
        mistakes.append(Mistake(_scaled_steps(factor, examples), tuple(replay(factor, False))))
    return mistakes


def _scaled_steps(factor: float, examples: int) -> str:
    if factor == -1.0:
        return "the steps go uphill: the update adds the gradient where it should subtract it"
    meanings = {
        float(examples): f"a sum over the N = {examples} examples where the mean is asked for?",
        1 / max(examples, 1): f"divided by N = {examples} once more?",
    }
    return (
        f"every step is the prescribed one times {name_factor(factor, meanings)}: another "
        "learning rate, or a loss or gradient scaled by that factor"
    )


def _reproduces(replayed: Sequence[float], reference: Sequence[float]) -> bool:
    steps = min(REPLAY_STEPS, len(reference))
    if len(replayed) < steps or steps == 0:
        return False
    mine, theirs = np.asarray(replayed[:steps]), np.asarray(reference[:steps])
    return bool(np.allclose(mine, theirs, rtol=REPLAY_RTOL / 4, atol=1e-7))
