"""End to end: `grader check` on the bundled notebooks and on realistic wrong submissions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from nbformat import NotebookNode

from grader.cli import main
from grader.config import Config
from grader.grading import check_notebooks
from grader.report import check_id
from grader.results import NotebookResult
from tests.conftest import NOTEBOOKS, ROOT, cell_of, edit_solution, solution, write

pytestmark = pytest.mark.slow


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


# A network set by hand from `true_coeffs` (a piecewise-linear chord of the parabola), never
# trained: its `losses` are then made up.
HAND_BUILT_NETWORK = """
c0, c1, c2 = true_coeffs
knots = torch.linspace(-40.0, 40.0, 10)
step = float(knots[1] - knots[0])
with torch.no_grad():
    untrained = criterion(model(x), y).item()
    model.fc0.weight.copy_(torch.ones(10, 1))
    model.fc0.bias.copy_(-knots)
    ends = torch.cat([knots[1:], knots[-1:] + step])
    chords = c1 + c2 * (knots + ends)
    model.fc1.weight.copy_(torch.cat([chords[:1], chords.diff()]).reshape(1, 10))
    model.fc1.bias.copy_(torch.tensor([c0 + c1 * knots[0] + c2 * knots[0] ** 2]))
    final = criterion(model(x), y).item()
"""
WHOLE_CELL = None  # as `old`: the row's `new` replaces the whole TO DO cell

WRONG = {
    "gradient_wrong_factor": (
        "02_linear_regression_numpy", "manual_gradient", "dl_dw = 2 * r * x", "dl_dw = 4 * r * x",
        # the loops are right: they keep their points by follow-through (test_followthrough.py)
        {"manual_gradient::gradient_matches_autograd"}, "dℓ/dw is off by a factor of 2",
    ),
    "gradient_without_the_2": (
        "02_linear_regression_numpy", "manual_gradient", "dl_dw = 2 * r * x", "dl_dw = r * x",
        {"manual_gradient::gradient_matches_autograd"},
        "off by a factor of 1/2 (the 2 of the derivative of r² is missing?)",
    ),
    "gradient_wrong_sign": (
        "04_autodiff_regression", "manual_mse_gradients", "residual = prediction - ys",
        "residual = ys - prediction",
        {"manual_mse_gradients::manual_gradients_match_autograd"}, "off by a factor of -1",
    ),
    "gradient_mean_over_rows_only": (
        "04_autodiff_regression", "manual_mse_gradients", "scale = 2.0 / residual.numel()",
        "scale = 2.0 / len(residual)",
        {"manual_mse_gradients::manual_gradients_match_autograd"},
        "off by a factor of 3 (divided by N = 7 instead of N·k = 21?)",
    ),
    # Typical mistakes of the training loops, each named by its cause.
    "forgets_zero_grad": (
        "03_linear_regression_module", "training_loop", "optimizer.zero_grad()", "pass",
        {"training_loop::training_matches_reference", "training_loop::training_lowers_the_cost"},
        "departs from the reference training at step 2: got 0.604166, expected 0.61204 from the "
        "same start and data (gradients pile up from step to step: `zero_grad()`",
    ),
    "forgets_grad_zero_in_the_autograd_loop": (
        "02_linear_regression_numpy", "autograd_loop",
        "    w_v.grad.zero_()                  # gradients accumulate unless reset\n"
        "    b_v.grad.zero_()",
        "",
        {"autograd_loop::autograd_agrees_with_gd", "autograd_loop::autograd_losses"},
        "gradients pile up from step to step",
    ),
    "forgets_grad_zero_on_the_parabola": (
        "01_autograd_basics", "parabola_descent", "        x.grad.zero_()", "        pass",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "gradients pile up from step to step",
    ),
    "zero_grad_between_backward_and_step": (
        "04_autodiff_regression", "logistic_training",
        "    optimizer.zero_grad()\n    loss.backward()\n    optimizer.step()",
        "    loss.backward()\n    optimizer.zero_grad()\n    optimizer.step()",
        {"logistic_training::logistic_matches_reference", "logistic_training::logistic_accuracy"},
        "the parameters never change: is the gradient reset between `backward()` and the step",
    ),
    "update_outside_no_grad": (
        "01_autograd_basics", "parabola_descent", "with torch.no_grad():", "if True:",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "cell `parabola_descent` raised RuntimeError",
    ),
    "logs_the_cost_after_the_update": (
        "03_linear_regression_module", "training_loop", "    costs.append(cost.item())",
        "    costs.append(mse_cost(model(x_pt), y_pt).item())",
        {"training_loop::training_matches_reference", "training_loop::training_lowers_the_cost"},
        "each entry is the reference's next one: it is logged one update too late: each entry "
        "should be the loss computed in each epoch, before that epoch's update",
    ),
    "logs_the_gd_loss_after_the_update": (
        "02_linear_regression_numpy", "gd_loop",
        "    gd_losses.append(total / N)\n    w = w - gd_learning_rate * grad_w\n"
        "    b = b - gd_learning_rate * grad_b",
        "    w = w - gd_learning_rate * grad_w\n    b = b - gd_learning_rate * grad_b\n"
        "    gd_losses.append(float(np.mean(loss(x, y))))",
        {"gd_loop::gd_matches_reference", "gd_loop::gd_losses"},
        "`gd_losses` starts at 1.02831, but the reference starts at 1.28432 on the same data (each "
        "entry is the reference's next one: it is logged one update too late",
    ),
    "logs_x_before_the_step": (
        "01_autograd_basics", "parabola_descent", WHOLE_CELL,
        "x = x_start.clone().requires_grad_(True)\n"
        "x_log, y_log = [], []\n"
        "for step in range(max_steps):\n"
        "    x_log.append(x.item())\n"
        "    y = f(x)\n"
        "    y.backward()\n"
        "    g = x.grad.item()\n"
        "    with torch.no_grad():\n"
        "        x -= learning_rate * g\n"
        "        x.grad.zero_()\n"
        "    y_log.append(y.item())\n"
        "    if abs(g) <= tolerance:\n"
        "        break\n"
        "x_final = x.item()\n",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "`x_log` starts at 1.541, but the reference starts at 1.42854 on the same data (each "
        "entry is the reference's previous one: it is logged one update too early",
    ),
    "descent_ignores_the_stop_rule": (
        "01_autograd_basics", "parabola_descent", "    if abs(g) <= tolerance:\n        break",
        "    pass",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "`y_log` has 1000 entries where the reference has 152, and they agree up to there: your "
        "loop runs on longer than the stop rule says",
    ),
    "one_epoch_too_many": (
        "03_linear_regression_module", "training_loop", "range(epochs)", "range(epochs + 1)",
        {"training_loop::training_matches_reference", "training_loop::training_lowers_the_cost"},
        "`costs` has 33 entries where the reference has 32, and they agree up to there",
    ),
    "descent_from_another_start": (
        "01_autograd_basics", "parabola_descent", "x = x_start.clone().requires_grad_(True)",
        "x = torch.zeros(1, requires_grad=True)",
        {"parabola_descent::descent_path_matches_reference",
         "parabola_descent::descent_takes_real_steps_to_the_minimum"},
        "`y_log` starts at -1.2, but the reference starts at 9.006 on the same data (the first "
        "entry is taken at the start: does your loop start from `x_start`",
    ),
    "training_a_new_model": (
        "04_autodiff_regression", "linear_training", "linear_losses = []",
        "linear_losses = []\nlinear_model = nn.Linear(2, 1).to(device)\n"
        "optimizer = optim.SGD(linear_model.parameters(), lr=learning_rate)",
        {"linear_training::linear_matches_reference",
         "linear_training::linear_recovers_true_coefficients"},
        "does your loop start from the model made above",
    ),
    "wrong_learning_rate": (
        "04_autodiff_regression", "linear_training", "lr=learning_rate", "lr=0.05",
        {"linear_training::linear_matches_reference",
         "linear_training::linear_recovers_true_coefficients"},
        "departs from the reference training at step 1: got 19.9662, expected 15.8518 from the "
        "same start and data (every step is the prescribed one times 1/2",
    ),
    "gd_sums_the_gradients": (
        "02_linear_regression_numpy", "gd_loop", "    grad_w /= N\n    grad_b /= N\n", "",
        {"gd_loop::gd_matches_reference", "gd_loop::gd_losses"},
        "every step is the prescribed one times 30 (a sum over the N = 30 examples where the mean "
        "is asked for?)",
    ),
    "sgd_epoch_total_not_divided": (
        "02_linear_regression_numpy", "sgd_loop", "sgd_losses.append(total / N)",
        "sgd_losses.append(total)",
        {"sgd_loop::sgd_matches_reference", "sgd_loop::sgd_losses",
         "sgd_loop::sgd_recovers_true_weights_and_agrees_with_gd"},
        "every entry is the reference's times 30 (the epoch's total, not divided by N = 30?)",
    ),
    "fit_sums_the_errors": (
        "01_autograd_basics", "curve_fit", ".mean()", ".sum()",
        {"curve_fit::fit_matches_reference", "curve_fit::fit_beats_the_initial_guess"},
        "the first entry is the reference's times 200 (the sum over the 200 points, not their "
        "mean?)",
    ),
    "too_few_epochs": (
        "02_linear_regression_numpy", "gd_loop", "for epoch in range(n_epochs):",
        "for epoch in range(50):",
        {"gd_loop::gd_matches_reference", "gd_loop::gd_losses"},
        "`gd_losses` should have 100 entries (one per epoch), it has 50",
    ),
    "never_trained": (
        "05_nonlinear_regression", "nonlinear_training", "for step in range(n_steps):",
        "for step in range(3):",
        {"nonlinear_training::network_fits_fresh_points",
         "nonlinear_training::training_loss_goes_down"},
        "`losses` has 3 entries: it should hold the loss of every step of the training",
    ),
    "under_trained": (
        "05_nonlinear_regression", "nonlinear_training", "lr=0.05", "lr=0.001",
        {"nonlinear_training::network_fits_fresh_points"}, "train longer",
    ),
    "mse_sums": (
        "03_linear_regression_module", "mse_cost", "** 2).mean()", "** 2).sum()",
        {"mse_cost::mse_cost_matches_the_definition"},
        "off by a factor of 8 (the sum over the 8 elements, not their mean)",
    ),
    "mse_divides_by_the_rows": (
        "03_linear_regression_module", "mse_cost", "** 2).mean()", "** 2).sum() / len(y)",
        {"mse_cost::mse_cost_matches_the_definition"},
        "off by a factor of 4 (divided by len(y) = 3, the rows, instead of y.numel() = 12",
    ),
    # Dtype and shape rules, as the text states them.
    "mse_returns_shape_1": (
        "03_linear_regression_module", "mse_cost", "** 2).mean()", "** 2).mean().reshape(1)",
        {"mse_cost::mse_cost_is_a_differentiable_tensor"},
        "`mse_cost(yhat, y)` should be a 0-dim tensor (one number), but it has shape (1,)",
    ),
    "f_prime_in_float64": (
        "05_nonlinear_regression", "tanh_derivative", "return 1 - torch.tanh(x) ** 2",
        "return 1 - torch.tanh(x.double()) ** 2",
        {"tanh_derivative::f_prime_matches_autograd"},
        "`f_prime(x)` should have dtype float32 (the input's), but it has float64",
    ),
    "f_prime_flattens": (
        "05_nonlinear_regression", "tanh_derivative", "return 1 - torch.tanh(x) ** 2",
        "return (1 - torch.tanh(x) ** 2).reshape(-1)",
        {"tanh_derivative::f_prime_matches_autograd"}, "but it has shape",
    ),
    # Work not done: made-up histories, closed forms, copies, a network set by hand.
    "made_up_history": (
        "03_linear_regression_module", "training_loop", "### END SOLUTION",
        "costs = [1.0, 0.0]\n### END SOLUTION",
        {"training_loop::training_matches_reference", "training_loop::training_lowers_the_cost"},
        "`costs` starts at 1, but the reference starts at 0.63159",
    ),
    "closed_form_after_the_loop": (
        "01_autograd_basics", "curve_fit", "### END SOLUTION",
        "params = torch.linalg.lstsq(X, y_noisy.unsqueeze(1)).solution.reshape(-1)\n"
        "### END SOLUTION",
        {"curve_fit::fit_matches_reference", "curve_fit::fit_beats_the_initial_guess"},
        "`error_log` ends at 4.58411, but the model you return has loss 4.15736 on the "
        "notebook's data (recomputed by the grader)",
    ),
    "closed_form_with_an_invented_log": (
        "04_autodiff_regression", "linear_training", WHOLE_CELL,
        "import numpy as np\n"
        "with torch.no_grad():\n"
        "    design = torch.cat([xs, torch.ones(len(xs), 1, device=device)], dim=1)\n"
        "    solution = torch.linalg.lstsq(design, ys_true).solution\n"
        "    linear_model.weight.copy_(solution[:2].T)\n"
        "    linear_model.bias.copy_(solution[2])\n"
        "linear_losses = [float(v) for v in np.geomspace(24.6411, 1e-12, n_epochs)]\n",
        {"linear_training::linear_matches_reference",
         "linear_training::linear_recovers_true_coefficients"},
        "`linear_losses` departs from the reference training at step 1",
    ),
    "autograd_loop_copies_gd": (
        "02_linear_regression_numpy", "autograd_loop", WHOLE_CELL,
        "w_v = torch.tensor(w_gd, dtype=torch.float32).reshape(2, 1).requires_grad_(True)\n"
        "b_v = torch.tensor(b_gd, dtype=torch.float32).reshape(1, 1).requires_grad_(True)\n"
        "autograd_losses = [float(torch.tensor(v, dtype=torch.float32)) for v in gd_losses]\n",
        {"autograd_loop::autograd_agrees_with_gd", "autograd_loop::autograd_losses"},
        "`autograd_losses` is `gd_losses` copied",
    ),
    "network_set_by_hand_with_a_constant_log": (
        "05_nonlinear_regression", "nonlinear_training", WHOLE_CELL,
        HAND_BUILT_NETWORK + "losses = [final] * 2000\n",
        {"nonlinear_training::network_fits_fresh_points",
         "nonlinear_training::training_loss_goes_down"},
        "every entry of `losses` is",
    ),
    "network_set_by_hand_with_a_made_up_log": (
        "05_nonlinear_regression", "nonlinear_training", WHOLE_CELL,
        HAND_BUILT_NETWORK + "losses = [3 * untrained, final, final / 2] * 10 + [final]\n",
        {"nonlinear_training::network_fits_fresh_points",
         "nonlinear_training::training_loss_goes_down"},
        "but the untrained model's loss on the notebook's data is",
    ),
    "loss_wrapped_as_a_new_tensor": (
        "03_linear_regression_module", "mse_cost", "return ((yhat - y) ** 2).mean()",
        "return torch.tensor(((yhat - y) ** 2).mean().item(), requires_grad=True)",
        {"mse_cost::mse_cost_is_a_differentiable_tensor"},
        "no gradient flows back from mse_cost's result to yhat",
    ),
    "loss_cut_and_rewired": (
        "03_linear_regression_module", "mse_cost", "return ((yhat - y) ** 2).mean()",
        "return ((yhat.detach() - y) ** 2).mean() + 0 * yhat.sum()",
        {"mse_cost::mse_cost_is_a_differentiable_tensor"},
        "the gradient of mse_cost with respect to yhat is wrong",
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


def wrong_submission(case: str) -> NotebookNode:
    """The solution notebook with the mistake of `WRONG[case]` made in it."""
    name, gid, old, new, _expected, _message = WRONG[case]
    if old is WHOLE_CELL:
        nb = solution(name)
        cell_of(nb, gid).source = new
        return nb
    return edit_solution(name, gid, old, new)


HARD_CODED = "hard_coded_answers"  # the folder of the hard-coded answers' notebook
LOCKED_EDITED = "locked_cell_edited"  # the folder of the notebook with a locked cell edited


def hard_coded_answers() -> NotebookNode:
    """02's solution with the values of its own parameters' run typed in as its answers."""
    nb = solution("02_linear_regression_numpy")
    (cell,) = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "gd_loop"]
    cell.source = cell.source.replace(
        "w_gd = w.copy()", "w_gd = np.array([2.00081429, -2.99937248])"
    ).replace("b_gd = b.copy()", "b_gd = np.array([0.99922052])")
    return nb


def locked_cell_edited() -> NotebookNode:
    """04's solution with its locked data cell edited to make less data."""
    return edit_solution("04_autodiff_regression", "make_regression_data", "N = 30", "N = 3")


def honest_styles(name: str) -> NotebookNode:
    """`name`'s solution with its cells of `HONEST_STYLES` written in those other styles."""
    nb = solution(name)
    for gid, source in HONEST_STYLES[name].items():
        cell_of(nb, gid).source = source
    return nb


def lost(result: NotebookResult) -> dict[str, str]:
    """The checks `result` failed, `check` -> message."""
    return {check_id(check): check.message for check in result.checks if not check.passed}


@pytest.fixture(scope="module")
def graded(course: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, NotebookResult]:
    """Every wrong submission, the hard-coded answers, the honest styles and the notebook with
    a locked cell edited, graded in one batch (a batch each would start a runner, its zygote and
    its kernels each time), by folder: a folder is named after its case (`WRONG`),
    `HARD_CODED`, `LOCKED_EDITED` or, for the honest styles, `honest-` and the notebook's name."""
    folder = tmp_path_factory.mktemp("submissions")
    notebooks = {case: (WRONG[case][0], wrong_submission(case)) for case in WRONG}
    notebooks[HARD_CODED] = ("02_linear_regression_numpy", hard_coded_answers())
    notebooks[LOCKED_EDITED] = ("04_autodiff_regression", locked_cell_edited())
    notebooks |= {f"honest-{name}": (name, honest_styles(name)) for name in HONEST_STYLES}
    paths = [write(nb, folder / case, name) for case, (name, nb) in notebooks.items()]
    results = check_notebooks(paths, course, workers=2)
    assert len(results) == len(paths) and not any(result.error for result in results)
    return {Path(result.path).parent.name: result for result in results}


@pytest.mark.parametrize("case", sorted(WRONG))
def test_wrong_submission_loses_exactly_the_points_it_breaks(
    graded: dict[str, NotebookResult], case: str
) -> None:
    *_, expected, message = WRONG[case]
    failed = lost(graded[case])
    assert {key.split("::", 1)[1] for key in failed} == expected
    assert any(message in text for text in failed.values()), failed


def test_hard_coded_answers_fail_the_hidden_variant(graded: dict[str, NotebookResult]) -> None:
    failed = lost(graded[HARD_CODED])
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


def test_edited_locked_cells_do_not_change_the_grade(graded: dict[str, NotebookResult]) -> None:
    result = graded[LOCKED_EDITED]
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


# Honest work in other styles than the solutions': every check must still pass (the history and
# model checks must not mistake them for made-up or copied work).
HONEST_STYLES = {
    "01_autograd_basics": {
        "parabola_descent": (
            "x = x_start.clone().requires_grad_(True)\n"
            "x_log, y_log, g = [], [], float('inf')\n"
            "while len(x_log) < max_steps and not abs(g) <= tolerance:\n"
            "    value = f(x)\n"
            "    (slope,) = torch.autograd.grad(value, x)\n"
            "    g = slope.item()\n"
            "    with torch.no_grad():\n"
            "        x.sub_(learning_rate * g)\n"
            "    x_log.append(float(x))\n"
            "    y_log.append(float(value))\n"
            "x_final = x_log[-1]\n"
        ),
        "curve_fit": (
            "params = params_init.clone().requires_grad_(True)\n"
            "error_log = []\n"
            "for _ in range(max_fit_steps):\n"
            "    error = torch.mean((X @ params - y_noisy) ** 2)\n"
            "    error.backward()\n"
            "    error_log.append(error.item())\n"
            "    with torch.no_grad():\n"
            "        params -= fit_learning_rate * params.grad\n"
            "    params.grad = None\n"
            "    if error_log[-1] < error_threshold:\n"
            "        break\n"
        ),
    },
    "02_linear_regression_numpy": {
        "gd_loop": (
            "w, b = w_init.copy(), b_init.copy()\n"
            "gd_losses = []\n"
            "for _ in range(n_epochs):\n"
            "    r = x @ w + b - y\n"
            "    gd_losses.append(float(np.mean(r ** 2)))\n"
            "    w = w - gd_learning_rate * 2 * x.T @ r / N\n"
            "    b = b - gd_learning_rate * np.array([2 * r.mean()])\n"
            "w_gd, b_gd = w.copy(), b.copy()\n"
            "plt.figure()\n"
            "plt.plot(gd_losses)\n"
            "plt.show()\n"
        ),
        "autograd_loop": (
            "w_v = w_init_t.clone().to(device).requires_grad_(True)\n"
            "b_v = b_init_t.clone().to(device).requires_grad_(True)\n"
            "autograd_losses = []\n"
            "for _ in range(n_epochs):\n"
            "    loss_t = ((x_t @ w_v + b_v - y_t) ** 2).mean()\n"
            "    grad_w, grad_b = torch.autograd.grad(loss_t, [w_v, b_v])\n"
            "    with torch.no_grad():\n"
            "        w_v.sub_(gd_learning_rate * grad_w)\n"
            "        b_v.sub_(gd_learning_rate * grad_b)\n"
            "    autograd_losses.append(loss_t.item())\n"
        ),
    },
    "03_linear_regression_module": {
        "mse_cost": "def mse_cost(yhat, y):\n    return torch.sum((yhat - y) ** 2) / y.numel()\n",
        "training_loop": (
            "costs = []\n"
            "for _ in range(epochs):\n"
            "    cost = mse_cost(model(x_pt), y_pt)\n"
            "    cost.backward()\n"
            "    optimizer.step()\n"
            "    optimizer.zero_grad()\n"
            "    costs += [cost.item()]\n"
        ),
    },
    "04_autodiff_regression": {
        "linear_training": (
            "optimizer = optim.SGD(linear_model.parameters(), lr=learning_rate)\n"
            "linear_losses = []\n"
            "for _ in range(n_epochs):\n"
            "    loss = ((linear_model(xs) - ys_true) ** 2).mean()\n"
            "    loss.backward()\n"
            "    optimizer.step()\n"
            "    optimizer.zero_grad()\n"
            "    linear_losses.append(loss.item())\n"
        ),
    },
    "05_nonlinear_regression": {
        "tanh_derivative": "def f_prime(x):\n    t = torch.tanh(x)\n    return 1 - t * t\n",
        "nonlinear_training": (
            "def train(network, steps):\n"
            "    opt = torch.optim.Adam(network.parameters(), lr=0.03)\n"
            "    history = []\n"
            "    for _ in range(steps):\n"
            "        loss = criterion(network(x), y)\n"
            "        loss.backward()\n"
            "        opt.step()\n"
            "        opt.zero_grad()\n"
            "        history.append(loss.item())\n"
            "    return history\n\n"
            "losses = train(model, 2500)\n"
        ),
    },
}


@pytest.mark.parametrize("name", sorted(HONEST_STYLES))
def test_honest_work_in_other_styles_keeps_every_point(
    graded: dict[str, NotebookResult], name: str
) -> None:
    assert lost(graded[f"honest-{name}"]) == {}
