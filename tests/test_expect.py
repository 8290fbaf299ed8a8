from __future__ import annotations

import numpy as np
import pytest
import torch

from grader.check import NotebookRun
from grader.expect import (
    CheckFailed,
    as_float_list,
    as_tensor,
    assert_close,
    assert_decreasing,
    assert_same_history,
    by_hand_cases,
    module_state,
)
from grader.extract import CaseResult, CellStatus, ModuleState, RunData, Unsupported


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
    with pytest.raises(CheckFailed, match="should have 2 entries"):
        assert_same_history([3.0], [3.0, 1.0], "losses", rtol=1e-4, atol=0)


def test_module_state_checks_the_architecture() -> None:
    state = ModuleState("Linear", {"weight": torch.zeros(1, 2), "bias": torch.zeros(1)})
    assert set(module_state(state, "m", {"weight": (1, 2), "bias": (1,)})) == {"weight", "bias"}
    with pytest.raises(CheckFailed, match="should be a torch model"):
        module_state([1, 2], "m", {})
    with pytest.raises(CheckFailed, match=r"weight should have shape \(2, 2\)"):
        module_state(state, "m", {"weight": (2, 2)})


def run_with_cases(*cases: CaseResult) -> NotebookRun:
    data = RunData({}, {}, {}, {"f_prime": list(cases)}, {}, {"tanh_derivative": CellStatus("ok")})
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
