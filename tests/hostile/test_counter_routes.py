"""Routes to autograd or to torch's MSE from a "by hand" cell, end to end through the bundled
notebooks: each costs exactly that cell's checks, with a message naming the route, whatever
reference the cell kept (a default argument, a closure, a class attribute, an alias), however
it reached the library (torch.func, forward mode, the C-level MSE), and whatever it did to the
grader's watch. Honest variants of the same cells keep every point."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from grader.config import load_config
from grader.grading import check_notebooks
from grader.report import check_id
from grader.results import NotebookResult
from tests.conftest import ROOT, edit_solution, write

pytestmark = pytest.mark.slow

GRADIENTS_04 = ("04_autodiff_regression", "manual_mse_gradients",
                "def manual_mse_gradients(linear, xs, ys):")  # fmt: skip
LOST_04 = {
    "manual_mse_gradients::manual_gradients_match_autograd",
    "manual_mse_gradients::manual_gradients_do_not_use_autograd",
}
F_PRIME_05 = ("05_nonlinear_regression", "tanh_derivative", "def f_prime(x):")
LOST_05 = {"tanh_derivative::f_prime_matches_autograd",
           "tanh_derivative::f_prime_is_finite_for_large_inputs"}  # fmt: skip
MSE_03 = ("03_linear_regression_module", "mse_cost", "def mse_cost(yhat, y):")
LOST_03 = {"mse_cost::mse_cost_matches_the_definition",
           "mse_cost::mse_cost_is_a_differentiable_tensor"}  # fmt: skip
GRADIENT_02 = ("02_linear_regression_numpy", "manual_gradient", "def gradient(x, y):")

# name: (notebook, grade id, line replaced, the student's code put before it, checks lost, message)
# The honest function that was there is renamed, so that the student's version is the one graded.
ROUTES = {
    "default_argument": (*GRADIENTS_04, """\
def manual_mse_gradients(linear, xs, ys, derive=torch.autograd.grad):
    loss = ((linear(xs) - ys) ** 2).mean()
    return tuple(derive(loss, (linear.weight, linear.bias)))""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "closure": (*GRADIENTS_04, """\
def make_gradients(derive):
    def gradients(linear, xs, ys):
        loss = ((linear(xs) - ys) ** 2).mean()
        return tuple(derive(loss, (linear.weight, linear.bias)))
    return gradients

manual_mse_gradients = make_gradients(torch.autograd.grad)""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "class_attribute": (*GRADIENTS_04, """\
class Derivation:
    run = torch.Tensor.backward

def manual_mse_gradients(linear, xs, ys):
    linear.zero_grad()
    Derivation.run(((linear(xs) - ys) ** 2).mean())
    return linear.weight.grad.clone(), linear.bias.grad.clone()""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "alias_imported_before": (*GRADIENTS_04, """\
from torch.autograd import grad as by_the_chain_rule

def manual_mse_gradients(linear, xs, ys):
    loss = ((xs @ linear.weight.T + linear.bias - ys) ** 2).mean()
    return tuple(by_the_chain_rule(loss, (linear.weight, linear.bias)))""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "torch_func": (*GRADIENTS_04, """\
def manual_mse_gradients(linear, xs, ys):
    def loss(weight, bias):
        return ((xs @ weight.T + bias - ys) ** 2).mean()
    return torch.func.grad(loss, argnums=(0, 1))(linear.weight.detach(), linear.bias.detach())""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "functional_jacobian": (*GRADIENTS_04, """\
def manual_mse_gradients(linear, xs, ys):
    loss = lambda weight, bias: ((xs @ weight.T + bias - ys) ** 2).mean()
    parameters = (linear.weight.detach(), linear.bias.detach())
    return torch.autograd.functional.jacobian(loss, parameters)""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "dispatch_mode_popped": (*GRADIENTS_04, """\
from torch.utils._python_dispatch import _disable_current_modes

def manual_mse_gradients(linear, xs, ys):
    with _disable_current_modes():
        loss = ((linear(xs) - ys) ** 2).mean()
        return tuple(torch.autograd.grad(loss, (linear.weight, linear.bias)))""",
        LOST_04, "`manual_mse_gradients` reached autograd"),
    "forward_ad": (*F_PRIME_05, """\
import torch.autograd.forward_ad as fwAD

def f_prime(x):
    with fwAD.dual_level():
        return fwAD.unpack_dual(torch.tanh(fwAD.make_dual(x, torch.ones_like(x)))).tangent""",
        LOST_05, "`f_prime` reached forward-mode autograd"),
    "monkeypatched_lookups": (*F_PRIME_05, """\
torch._C._autograd._disable_profiler_legacy = lambda: []
torch._C._current_graph_task_id = lambda: -1

def f_prime(x):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(torch.tanh(x).sum(), x)[0]""",
        LOST_05, "`f_prime` ran while the grader's watch on these routes was switched off"),
    "c_level_mse": (*MSE_03, """\
def mse_cost(yhat, y):
    return torch._C._nn.mse_loss(yhat, y, 1)  # 1: the mean""",
        LOST_03, "`mse_cost` reached torch's own MSE"),
    "finite_differences": (*GRADIENT_02, """\
def gradient(x, y, h=1e-6):
    def loss(params):
        return float(((x @ params[:2] + params[2:] - y) ** 2).sum())
    params, grads = np.concatenate([w, b]), np.zeros(3)
    for i in range(3):
        step = np.zeros(3)
        step[i] = h
        grads[i] = (loss(params + step) - loss(params - step)) / (2 * h)
    return grads[:2], grads[2:]""",
        {"manual_gradient::gradient_matches_autograd"}, "lose a finite-difference step"),
    "central_differences": (*F_PRIME_05, """\
def f_prime(x, h=1e-6):
    wide = x.double()  # a float64 difference passes any float32 tolerance
    return ((torch.tanh(wide + h) - torch.tanh(wide - h)) / (2 * h)).to(x.dtype)""",
        LOST_05, "that of a finite difference"),
    # The loop ran, but the history handed in is a straight line between the right ends.
    "history_from_linspace": ("05_nonlinear_regression", "nonlinear_training",
                              'print(f"trained for {n_steps}', """\
with torch.no_grad():
    last = criterion(model(x), y).item()
losses = np.linspace(losses[0], last, len(losses)).tolist()""",
        {"nonlinear_training::network_fits_fresh_points",
         "nonlinear_training::training_loss_goes_down"}, "written by hand"),
    # Honest work by hand, in other styles: every point kept.
    "honest_loop_with_a_graph": (*GRADIENTS_04, """\
def manual_mse_gradients(linear, xs, ys):
    grad_weight = torch.zeros_like(linear.weight)
    grad_bias = torch.zeros_like(linear.bias)
    for x, y in zip(xs, ys):
        residual = linear.weight @ x + linear.bias - y
        grad_weight = grad_weight + torch.outer(residual, x)
        grad_bias = grad_bias + residual
    scale = 2.0 / ys.numel()
    return (scale * grad_weight).detach(), (scale * grad_bias).detach()""", set(), ""),
    "honest_factored_tanh": (*F_PRIME_05, """\
def f_prime(x):
    t = torch.tanh(x)
    return (1 - t) * (1 + t)""", set(), ""),
    "honest_sum_over_numel": (*MSE_03, """\
def mse_cost(yhat, y):
    return ((yhat - y) ** 2).sum() / y.numel()""", set(), ""),
    "honest_residual": (*GRADIENT_02, """\
def gradient(x, y):
    residual = x @ w + b - y
    return 2 * residual * x, 2 * residual""", set(), ""),
}  # fmt: skip


@pytest.fixture(scope="module")
def graded(
    reference_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, NotebookResult]:
    """Every row graded in one batch (the runs share the machine's workers)."""
    course = dataclasses.replace(load_config(ROOT), cache_dir=str(reference_cache))
    root = tmp_path_factory.mktemp("counter-routes")
    paths = []
    for name, (notebook, gid, line, code, _, _) in ROUTES.items():
        renamed = line.replace("def ", "def by_hand_", 1)
        nb = edit_solution(notebook, gid, line, f"{code}\n\n\n{renamed}")
        paths.append(write(nb, root / name, notebook))
    return dict(zip(ROUTES, check_notebooks(paths, course), strict=True))


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_a_route_costs_exactly_the_cells_checks(
    graded: dict[str, NotebookResult], route: str
) -> None:
    *_, lost, message = ROUTES[route]
    result = graded[route]
    failed = {check_id(c).split("::", 1)[1]: c.message for c in result.checks if not c.passed}
    assert set(failed) == lost, failed
    assert all(message in text for text in failed.values()), failed
