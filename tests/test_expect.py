from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader.check import NotebookRun
from grader.expect import (
    CheckFailed,
    HistoryRules,
    Mistake,
    as_float_list,
    as_tensor,
    assert_close,
    assert_decreasing,
    assert_history_of_model,
    assert_same_history,
    assert_tensor_like,
    by_hand_cases,
    fmt_apart,
    module_state,
    name_factor,
)
from grader.extract import CaseResult, CellOutcome, ModuleState, RunData, Unsupported
from grader.replay import FROZEN, PILING_UP, descent_mistakes, linear_descent, seeded_linear


def test_factor_of_two_is_named() -> None:
    with pytest.raises(
        CheckFailed, match=r"dℓ/db is off by a factor of 2: got 2.44, expected 1.22 at x=1"
    ):
        assert_close(
            torch.tensor([2.44]), torch.tensor([1.22]), "dℓ/db", rtol=1e-6, atol=0, where="at x=1"
        )


def test_wrong_sign_is_named() -> None:
    with pytest.raises(CheckFailed, match="factor of -1"):
        assert_close(-torch.ones(3), torch.ones(3), "grad", rtol=1e-6, atol=0)


def test_other_differences_show_both_values() -> None:
    with pytest.raises(CheckFailed, match=r"is wrong: got \[1, 5\], expected \[1, 2\]"):
        assert_close(torch.tensor([1.0, 5.0]), torch.tensor([1.0, 2.0]), "w", rtol=1e-6, atol=0)


def test_nan_is_reported_as_nan() -> None:
    with pytest.raises(CheckFailed, match="is NaN at element 1"):
        assert_close(torch.tensor([0.0, float("nan")]), torch.zeros(2), "f'", rtol=1, atol=1)


def test_increasing_loss_points_at_the_step() -> None:
    with pytest.raises(CheckFailed, match=r"increased after step 3 .*wrong sign"):
        assert_decreasing([4.0, 3.0, 2.0, 2.5])
    assert_decreasing([4.0, 3.0, 3.0])


def test_lists_of_tensors_that_require_grad_are_numbers() -> None:
    scalars = [torch.tensor(1.5, requires_grad=True), 2.5]
    assert as_tensor(scalars, "x_log").tolist() == [1.5, 2.5]
    ones = [torch.tensor([1.5], requires_grad=True), torch.tensor([2.5], requires_grad=True)]
    assert as_tensor(ones, "x_log").shape == (2, 1)
    assert as_float_list(ones, "x_log") == [1.5, 2.5]


def test_shapes_are_checked_with_a_clear_message() -> None:
    assert as_tensor(np.array([[1.0, 2.0]]), "w", (2,)).shape == (2,)
    with pytest.raises(CheckFailed, match=r"`w` should have shape \(2,\), but it has shape \(3,\)"):
        as_tensor([1, 2, 3], "w", (2,))
    with pytest.raises(CheckFailed, match="`w` should hold numbers, but it is a function"):
        as_tensor(Unsupported("function"), "w")


def test_history_must_follow_the_reference() -> None:
    with pytest.raises(CheckFailed, match="departs from the reference training at step 1"):
        assert_same_history([3.0, 2.0], [3.0, 1.0], "losses", rtol=1e-4, atol=0)
    with pytest.raises(
        CheckFailed, match="has 1 entries where the reference has 2, and they agree"
    ):
        assert_same_history([3.0], [3.0, 1.0], "losses", rtol=1e-4, atol=0)
    with pytest.raises(CheckFailed, match="is empty"):
        assert_same_history([], [3.0, 1.0], "losses", rtol=1e-4, atol=0)
    assert_same_history([3.0, 1.0], [3.0, 1.00001], "losses", rtol=1e-4, atol=0)


@given(
    factor=st.sampled_from([3.0, 7.0, 0.125, -2.5, 30.0, 1 / 30, 1.372]),
    values=st.lists(st.floats(0.5, 100), min_size=2, max_size=8),
)
def test_any_constant_factor_between_vectors_is_named(factor: float, values: list[float]) -> None:
    expected = torch.tensor(values, dtype=torch.float64)
    with pytest.raises(CheckFailed, match=f"off by a factor of {re.escape(name_factor(factor))}:"):
        assert_close(factor * expected, expected, "g", rtol=1e-6, atol=0)


def test_factors_are_named_simply_and_with_their_meaning() -> None:
    assert [name_factor(k) for k in (30.0, 1 / 30, -2.0, 1.372, 4.0)] == [
        "30", "1/30", "-2", "1.372", "4",
    ]  # fmt: skip
    meaning = {8.0: "the sum, not the mean"}
    assert name_factor(8.0000001, meaning) == "8 (the sum, not the mean)"
    # one number is a "factor" of any other: only simple or named ones are called so
    with pytest.raises(CheckFailed, match="is wrong"):
        assert_close(torch.tensor(1.372), torch.tensor(1.0), "c", rtol=1e-6, atol=0)
    with pytest.raises(CheckFailed, match=r"factor of 8 \(the sum, not the mean\)"):
        assert_close(torch.tensor(8.0), torch.tensor(1.0), "c", rtol=1e-6, atol=0, factors=meaning)


def test_values_print_with_the_digits_that_tell_them_apart() -> None:
    got, expected = torch.tensor([1.000012, 2.0]), torch.tensor([1.000011, 2.0])
    mine, theirs = fmt_apart(got, expected)
    assert mine != theirs and "1.000012" in mine and "1.000011" in theirs
    with pytest.raises(CheckFailed, match=r"got \[1\.000012, 2\], expected \[1\.000011, 2\]"):
        assert_close(got, expected, "w", rtol=1e-9, atol=0)
    many = torch.zeros(10)
    with pytest.raises(CheckFailed, match=r"largest difference at element 8: 0\.5 against 0"):
        assert_close(many.index_fill(0, torch.tensor([8]), 0.5), torch.zeros(10), "v", rtol=0,
                     atol=1e-9)  # fmt: skip


def test_histories_name_how_they_depart() -> None:
    reference = [4.0, 3.0, 2.0, 1.5, 1.2]
    rules = HistoryRules(start="`w_init`", logged="the loss before the update", stop="10 epochs",
                         factors={30.0: "the sum over the 30 examples?"})  # fmt: skip
    cases = {
        "logged one update too late": [3.0, 2.0, 1.5, 1.2, 1.0],
        "logged one update too early": [5.0, 4.0, 3.0, 2.0, 1.5],
        "times 30 (the sum over the 30 examples?)": [30 * v for v in reference],
        "start from `w_init`": [9.0, 3.0, 2.0, 1.5, 1.2],
        "runs on longer than the stop rule says (10 epochs)": [*reference, 1.1],
        "stops sooner": reference[:3],
        "the mistake's cause": [4.0, 3.5, 3.1, 2.9, 2.7],
    }
    mistakes = [Mistake("the mistake's cause", (4.0, 3.5, 3.1, 2.9, 2.7))]
    for fragment, history in cases.items():
        with pytest.raises(CheckFailed, match=re.escape(fragment)):
            assert_same_history(history, reference, "`losses`", rtol=1e-6, atol=0, rules=rules,
                                mistakes=mistakes)  # fmt: skip
    with pytest.raises(CheckFailed, match=r"starts at 9, .*reference starts at 4"):
        assert_same_history(cases["start from `w_init`"], reference, "`l`", rtol=1e-6, atol=0)


def test_a_history_must_be_the_training_of_the_returned_model() -> None:
    real = [4.0, 3.0, 2.2, 1.7, 1.5, 1.45, 1.42, 1.41, 1.405, 1.402, 1.401, 1.4005]
    assert_history_of_model(real, "`l`", start=4.0, end=1.4)
    made_up = {
        "has 2 entries": ([1.0, 0.0], 1.0, 0.0),
        "every entry of `l` is 2": ([2.0] * 5, 2.0, 2.0),
        "starts at 1, but the untrained model's loss": ([1.0, 0.5, 0.2], 4.0, 0.2),
        "ends at 1.4005, but the model you return has loss 0.01": (real, 4.0, 0.01),
    }
    for fragment, (history, start, end) in made_up.items():
        with pytest.raises(CheckFailed, match=re.escape(fragment)):
            assert_history_of_model(history, "`l`", start=start, end=end)
    # logged after the update: the last entry is the returned model's loss
    with pytest.raises(CheckFailed, match=r"ends at 1\.4005"):
        assert_history_of_model(real, "`l`", start=4.0, end=1.4, logged_after=True)


def test_tensor_rules_are_checked_as_the_text_states_them() -> None:
    assert assert_tensor_like(torch.tensor(2.0), "c", ()).shape == ()
    with pytest.raises(
        CheckFailed, match=r"should be a 0-dim tensor \(one number\), but it has shape \(1,\)"
    ):
        assert_tensor_like(torch.tensor([2.0]), "c", ())
    with pytest.raises(CheckFailed, match=r"should have dtype float32 .* but it has float64"):
        assert_tensor_like(torch.zeros(3, dtype=torch.float64), "f", (3,), torch.float32)
    with pytest.raises(CheckFailed, match="should be a torch tensor, but it is a float"):
        assert_tensor_like(2.0, "c", ())
    with pytest.raises(CheckFailed, match=r"should have shape \(2,\), but it has shape \(1, 2\)"):
        as_tensor(np.zeros((1, 2)), "w", (2,), exact=True)


def _quadratic_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = np.hstack([rng.normal(size=(20, 2)), np.ones((20, 1))])
    return features, features @ np.array([1.0, -2.0, 0.5]), np.zeros(3)


def test_replayed_mistakes_are_recognised() -> None:
    features, targets, start = _quadratic_problem()

    def replay(factor: float, accumulate: bool) -> list[float]:
        return linear_descent(features, targets, start, 0.05 * factor, 40, accumulate=accumulate)

    reference = replay(1.0, False)
    mistakes = descent_mistakes(replay, reference, len(targets))
    causes = {
        PILING_UP: replay(1.0, True),
        FROZEN: replay(0.0, False),
        "times 20 (a sum over the N = 20 examples": replay(20.0, False),
        "times 1/2": replay(0.5, False),
        "the steps go uphill": replay(-1.0, False),
    }
    for cause, history in causes.items():
        with pytest.raises(CheckFailed, match=re.escape(cause)):
            assert_same_history(history, reference, "`l`", rtol=1e-6, atol=0, mistakes=mistakes)
    # a replay that does not reproduce the reference names nothing
    assert descent_mistakes(replay, [v + 1 for v in reference], len(targets)) == []


def test_seeded_layers_are_the_notebooks_and_leave_the_random_state_alone() -> None:
    state = torch.random.get_rng_state()
    weight, bias = seeded_linear(3, (2, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(3)
    layer = torch.nn.Linear(2, 1)
    assert np.array_equal(weight, layer.weight.detach().double().numpy())
    assert np.array_equal(bias, layer.bias.detach().double().numpy())


def test_module_state_checks_the_architecture() -> None:
    state = ModuleState("Linear", {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)})
    assert set(module_state(state, "m", {"weight": (1, 2), "bias": (1,)})) == {"weight", "bias"}
    with pytest.raises(CheckFailed, match="should be a torch model"):
        module_state([1, 2], "m", {})
    with pytest.raises(CheckFailed, match=r"weight should have shape \(2, 2\)"):
        module_state(state, "m", {"weight": (2, 2)})


def run_with_cases(*cases: CaseResult) -> NotebookRun:
    data = RunData(
        {},
        {},
        {},
        {"f_prime": list(cases)},
        {},
        {"tanh_derivative": CellOutcome("tanh_derivative", "ok")},
    )
    return NotebookRun(data, "tanh_derivative", "student")


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ({"forward_ad": "aten::_make_dual"}, "`f_prime` reached forward-mode autograd (dual"),
        ({"mse_loss": "aten::mse_loss"}, "write the mean of the squared differences yourself"),
        ({"tampering": "the profiler was stopped"}, "`f_prime` ran while the grader's watch"),
    ],
)
def test_a_forbidden_route_in_any_case_fails_the_check_naming_it(
    routes: dict[str, str], message: str
) -> None:
    honest, forbidden = CaseResult((1,), {}), CaseResult((2,), {}, 0.0, None, 1, routes)
    assert by_hand_cases(run_with_cases(honest), "f_prime") == [honest]
    with pytest.raises(CheckFailed, match=message.replace("(", r"\(")) as failure:
        by_hand_cases(run_with_cases(honest, forbidden), "f_prime")
    assert next(iter(routes.values())) in str(failure.value)
