"""End to end: `grader check` on the bundled notebooks and on realistic wrong submissions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from grader.cli import main
from grader.config import Config
from grader.grading import check_notebooks
from grader.report import check_id
from tests.conftest import NOTEBOOKS, ROOT, edit_solution, solution, write

pytestmark = pytest.mark.slow


def failed_checks(course: Config, path: Path) -> dict[str, str]:
    (result,) = check_notebooks([path], course)
    return {check_id(check): check.message for check in result.checks if not check.passed}


def test_solutions_get_full_marks_on_both_runs(course: Config, tmp_path: Path, capsys) -> None:
    results_json, junit = tmp_path / "results.json", tmp_path / "junit.xml"
    argv = ["--course", str(ROOT), "check", str(ROOT / "solutions"), "--json", str(results_json)]
    code = main([*argv, "--junit", str(junit)])
    out = capsys.readouterr().out
    data = json.loads(results_json.read_text())
    assert code == 0, out
    assert data["score"] == data["max_score"] > 0
    assert {test["name"].split("::")[0] for test in data["tests"]} == set(NOTEBOOKS)
    assert all(test["status"] == "passed" for test in data["tests"])
    assert "<testsuites>" in junit.read_text()


def test_solutions_pass_under_another_secret_hidden_seed(course: Config) -> None:
    # Instructors choose their own GRADER_HIDDEN_SEED: the checks must hold for other variants.
    other = dataclasses.replace(course, hidden_seed=20261122)
    results = check_notebooks([ROOT / "solutions"], other)
    assert [check_id(c) for r in results for c in r.checks if not c.passed] == []
    # Every TO DO cell has a figure, and each is drawn: the solution's history is the reference's.
    for result in results:
        assert {f.grade_id for f in result.figures} == {a.grade_id for a in result.answers}
        for figure in result.figures:
            assert figure.missing == "" and figure.series, (result.notebook, figure.title)
            lines = {series.label: series.y for series in figure.series}
            if "your run" in lines:
                assert lines["your run"] == pytest.approx(lines["reference solution"], rel=1e-3)


def test_untouched_exercises_score_zero_with_one_message_per_cell(course: Config) -> None:
    results = check_notebooks([ROOT / "exercises"], course)
    for result in results:
        assert result.score == 0 and result.max_score > 0
        for check in result.checks:
            assert check.message == (
                f"cell `{check.grade_id}` is not done yet (it still raises NotImplementedError)"
            )
        assert all("is not done yet" in figure.missing for figure in result.figures)


WRONG = {
    "gradient_wrong_factor": (
        "02_linear_regression_numpy", "manual_gradient", "dl_dw = 2 * r * x", "dl_dw = 4 * r * x",
        # the loops are right: they keep their points by follow-through (test_followthrough.py)
        {"manual_gradient::gradient_matches_autograd"}, "dℓ/dw is off by a factor of 2",
    ),
    "gradient_wrong_sign": (
        "04_autodiff_regression", "manual_mse_gradients", "residual = prediction - ys",
        "residual = ys - prediction",
        {"manual_mse_gradients::manual_gradients_match_autograd"}, "off by a factor of -1",
    ),
    "forgets_zero_grad": (
        "03_linear_regression_module", "training_loop", "optimizer.zero_grad()", "pass",
        {"training_loop::training_matches_reference"}, "departs from the reference training",
    ),
    "update_outside_no_grad": (
        "01_autograd_basics", "parabola_descent", "with torch.no_grad():", "if True:",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "cell `parabola_descent` raised RuntimeError",
    ),
    "wrong_learning_rate": (
        "04_autodiff_regression", "linear_training", "lr=learning_rate", "lr=0.05",
        {"linear_training::linear_matches_reference",
         "linear_training::linear_recovers_true_coefficients"},
        "departs from the reference training at step 1",
    ),
    "too_few_epochs": (
        "02_linear_regression_numpy", "gd_loop", "for epoch in range(n_epochs):",
        "for epoch in range(50):",
        {"gd_loop::gd_matches_reference", "gd_loop::gd_losses"}, "",
    ),
    "never_trained": (
        "05_nonlinear_regression", "nonlinear_training", "for step in range(n_steps):",
        "for step in range(3):",
        {"nonlinear_training::network_fits_fresh_points",
         "nonlinear_training::training_loss_goes_down"},
        "train longer",
    ),
    "under_trained": (
        "05_nonlinear_regression", "nonlinear_training", "lr=0.05", "lr=0.001",
        {"nonlinear_training::network_fits_fresh_points"}, "train longer",
    ),
    "mse_sums": (
        "03_linear_regression_module", "mse_cost", "** 2).mean()", "** 2).sum()",
        {"mse_cost::mse_cost_matches_the_definition"}, "returns the sum of the squared errors",
    ),
    # The library's function under a name of the notebook's own: still counted as its call.
    "autograd_through_an_alias": (
        "04_autodiff_regression", "manual_mse_gradients",
        "def manual_mse_gradients(linear, xs, ys):",
        "from torch.autograd import grad\n\n"
        "def manual_mse_gradients(linear, xs, ys):\n"
        "    weight = linear.weight.detach().requires_grad_(True)\n"
        "    bias = linear.bias.detach().requires_grad_(True)\n"
        "    return tuple(grad(((xs @ weight.T + bias - ys) ** 2).mean(), (weight, bias)))\n\n"
        "def by_hand(linear, xs, ys):",
        {"manual_mse_gradients::manual_gradients_match_autograd",
         "manual_mse_gradients::manual_gradients_do_not_use_autograd"},
        "`manual_mse_gradients` reached autograd",
    ),
    "library_mse_through_an_alias": (
        "03_linear_regression_module", "mse_cost", "def mse_cost(yhat, y):",
        "from torch.nn.functional import mse_loss\n\n"
        "def mse_cost(yhat, y):\n    return mse_loss(yhat, y)\n\n"
        "def by_hand(yhat, y):",
        {"mse_cost::mse_cost_matches_the_definition",
         "mse_cost::mse_cost_is_a_differentiable_tensor"},
        "`mse_cost` reached torch's own MSE",
    ),
    "tanh_derivative_nan": (
        "05_nonlinear_regression", "tanh_derivative", "return 1 - torch.tanh(x) ** 2",
        "return 4 * torch.exp(2 * x) / (torch.exp(2 * x) + 1) ** 2",
        {"tanh_derivative::f_prime_is_finite_for_large_inputs"}, "is NaN",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_submission_loses_exactly_the_points_it_breaks(
    course: Config, tmp_path: Path, case: str
) -> None:
    name, gid, old, new, expected, message = WRONG[case]
    path = write(edit_solution(name, gid, old, new), tmp_path, name)
    failed = failed_checks(course, path)
    assert {key.split("::", 1)[1] for key in failed} == expected
    assert any(message in text for text in failed.values()), failed


def test_hard_coded_answers_fail_the_hidden_variant(course: Config, tmp_path: Path) -> None:
    nb = solution("02_linear_regression_numpy")
    (cell,) = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "gd_loop"]
    cell.source = cell.source.replace(
        "w_gd = w.copy()", "w_gd = np.array([2.00081429, -2.99937248])"
    ).replace("b_gd = b.copy()", "b_gd = np.array([0.99922052])")
    path = write(nb, tmp_path, "02_linear_regression_numpy")
    failed = failed_checks(course, path)
    assert set(failed) == {"02_linear_regression_numpy::gd_loop::gd_matches_reference"}
    assert "passes on the notebook's own data but not on the hidden variant" in next(
        iter(failed.values())
    )


def test_a_broken_notebook_is_graded_zero_and_the_batch_goes_on(
    course: Config, tmp_path: Path
) -> None:
    broken = tmp_path / "03_linear_regression_module.ipynb"
    broken.write_text('{"cells": [', encoding="utf-8")
    good = write(solution("05_nonlinear_regression"), tmp_path, "05_nonlinear_regression")
    reported: list[str] = []
    first, second = check_notebooks(
        [broken, good], course, on_result=lambda result: reported.append(result.notebook)
    )
    assert sorted(reported) == ["03_linear_regression_module", "05_nonlinear_regression"]
    assert first.score == 0 and "not valid JSON" in first.notices[0]
    assert all("your notebook could not be read" in check.message for check in first.checks)
    assert second.score == second.max_score


def test_edited_locked_cells_do_not_change_the_grade(course: Config, tmp_path: Path) -> None:
    nb = edit_solution("04_autodiff_regression", "make_regression_data", "N = 30", "N = 3")
    path = write(nb, tmp_path, "04_autodiff_regression")
    (result,) = check_notebooks([path], course)
    assert result.score == result.max_score
    assert "your edits to the locked cell `make_regression_data` were ignored" in result.notices


@pytest.mark.gpu
def test_cuda_device_gives_full_marks(course: Config) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    results = check_notebooks([ROOT / "solutions"], dataclasses.replace(course, device="cuda"))
    assert all(result.score == result.max_score for result in results)
    assert {result.device for result in results} == {"cuda"}
