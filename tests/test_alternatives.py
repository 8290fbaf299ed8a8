"""Honest alternatives: other correct ways of writing each TO DO cell keep every point.

Every TO DO cell of the five notebooks has at least three alternatives a competent student could
write: a vectorised or a loop form, `torch.optim` where the text allows it, another optimiser
where it is free, other names, other plotting, other forms of the graded values. Variant `k` of a
notebook takes the `k`-th alternative of every cell that has one, and the variants of all five
notebooks are graded in one batch. Variant 1 holds the other forms of the graded values (NumPy
arrays, tensors, other layouts), so it also runs top to bottom, to show that the locked cells
displaying them accept them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nbformat import NotebookNode

from grader.config import Config
from grader.engine.client import Zygote
from grader.execute import Limits
from grader.grading import check_notebooks
from grader.notebook import todo_ids
from grader.report import check_id
from grader.runner import LocalRunner
from tests.conftest import NOTEBOOKS, cell_of, run_notebooks, solution, write

pytestmark = pytest.mark.slow

PARABOLA_DESCENT = [
    # A `while` loop, torch.autograd.grad instead of backward(), other names, a plot without
    # plt.figure().
    """
point = x_start.clone().requires_grad_(True)
x_log, y_log = [], []
steps = 0
while steps < max_steps:
    value = f(point)
    (slope,) = torch.autograd.grad(value, point)
    slope = slope.item()
    with torch.no_grad():
        point -= learning_rate * slope
    x_log.append(point.item())
    y_log.append(value.item())
    steps += 1
    if abs(slope) <= tolerance:
        break
x_final = point.item()
plt.plot(x_log, y_log, "o-")
""",
    # NumPy logs, a 1-element tensor for x_final, an in-place sub_ and .grad = None.
    """
x = x_start.clone().requires_grad_(True)
xs, ys = [], []
for _ in range(max_steps):
    y = f(x)
    y.backward()
    g = x.grad.item()
    with torch.no_grad():
        x.sub_(learning_rate * g)
    x.grad = None
    xs.append(x.item())
    ys.append(y.item())
    if abs(g) <= tolerance:
        break
x_log = np.array(xs)
y_log = np.array(ys)
x_final = x.detach().clone()
""",
    # The update through .data, float64 tensor logs.
    """
x = x_start.clone().requires_grad_(True)
positions, values = [], []
for step in range(max_steps):
    y = f(x)
    y.backward()
    g = x.grad.item()
    x.data = x.data - learning_rate * g
    x.grad.zero_()
    positions.append(x.item())
    values.append(y.item())
    if abs(g) <= tolerance:
        break
x_log = torch.tensor(positions, dtype=torch.float64)
y_log = torch.tensor(values, dtype=torch.float64)
x_final = positions[-1]
""",
    # The seed's style: `while` on the last slope, a step counter, the logs inside no_grad.
    """
x_ = x_start.clone()
x_.requires_grad = True
x_log = []
y_log = []
counter = 0
dy_dx_ = 1000
while np.abs(dy_dx_) > tolerance:
    y_ = f(x_)
    y_.backward()
    dy_dx_ = x_.grad.item()
    with torch.no_grad():
        x_ -= learning_rate * dy_dx_
        x_.grad.zero_()
        x_log.append(x_.item())
        y_log.append(y_.item())
    counter += 1
    if counter == max_steps:
        break
x_final = x_.item()
""",
]

CURVE_FIT = [
    # torch.optim.SGD, zero_grad first, a semilogy plot without plt.figure().
    """
params = params_init.clone().requires_grad_(True)
optimizer = torch.optim.SGD([params], lr=fit_learning_rate)
error_log = []
for step in range(max_fit_steps):
    optimizer.zero_grad()
    error = torch.mean((X @ params - y_noisy) ** 2)
    error.backward()
    optimizer.step()
    error_log.append(error.item())
    if error_log[-1] < error_threshold:
        break
plt.semilogy(error_log)
""",
    # The seed's style: a (3, 1) column, torch.mm, a sum divided by len.
    """
params = params_init.clone().unsqueeze(1).requires_grad_(True)
error_log = []
for step in range(max_fit_steps):
    y_pred = torch.mm(X, params).squeeze()
    error = (y_pred - y_noisy).pow(2).sum() / len(y_noisy)
    error.backward()
    error_log.append(error.item())
    with torch.no_grad():
        params -= fit_learning_rate * params.grad
        params.grad.zero_()
    if error < error_threshold:
        break
""",
    # A `while` loop, torch.autograd.grad, a new tensor each step (not in place), a tensor log.
    """
p = params_init.clone().requires_grad_(True)
history = []
step = 0
while step < max_fit_steps:
    residual = X @ p - y_noisy
    err = (residual * residual).mean()
    (grad,) = torch.autograd.grad(err, p)
    history.append(err.item())
    p = (p - fit_learning_rate * grad).detach().requires_grad_(True)
    step += 1
    if history[-1] < error_threshold:
        break
params = p.detach()
error_log = torch.tensor(history)
""",
    # float64 tensors, F.mse_loss, the update through .data and `.grad = None`, a print.
    """
import torch.nn.functional as F

params = params_init.clone().double().requires_grad_(True)
X64, y64 = X.double(), y_noisy.double()
error_log = []
for _ in range(max_fit_steps):
    error = F.mse_loss(X64 @ params, y64)
    error.backward()
    error_log.append(error.item())
    params.data -= fit_learning_rate * params.grad.data
    params.grad = None
    if error_log[-1] < error_threshold:
        break
print(f"final error {error_log[-1]:.4f} after {len(error_log)} steps")
""",
]

MANUAL_GRADIENT = [
    # The seed's one-liner, without forward().
    """
def gradient(x, y):
    residual = x @ w + b - y
    return 2 * residual * x, 2 * residual
""",
    # Component by component.
    """
def gradient(x, y):
    r = float(w[0] * x[0] + w[1] * x[1] + b[0] - np.asarray(y).item())
    dl_dw = np.array([2 * x[0] * r, 2 * x[1] * r])
    dl_db = np.array([2 * r])
    return dl_dw, dl_db
""",
    # dl_db as a plain float.
    """
def gradient(x, y):
    error = forward(x)[0] - y
    return 2.0 * error * np.asarray(x), 2.0 * error
""",
]

SGD_LOOP = [
    # The formulas inline, updates in place, a NumPy array for the log, plt.subplots.
    """
w = w_init.copy()
b = b_init.copy()
epoch_losses = np.zeros(n_epochs)
for epoch in range(n_epochs):
    for x_i, y_i in zip(x, y):
        r = x_i @ w + b - y_i
        w -= sgd_learning_rate * 2 * r * x_i
        b -= sgd_learning_rate * 2 * r
        epoch_losses[epoch] += ((x_i @ w + b - y_i) ** 2).item()
sgd_losses = epoch_losses / N
w_sgd = w.copy()
b_sgd = b.copy()
fig, ax = plt.subplots()
ax.plot(sgd_losses)
ax.set_yscale("log")
""",
    # An index loop; the epoch total adds up the 1-element arrays that loss() returns (the seed's
    # style); a log scale on a new figure.
    """
w, b = w_init.copy(), b_init.copy()
sgd_losses = []
for epoch in range(n_epochs):
    l = 0
    for i in range(N):
        grad_w, grad_b = gradient(x[i], y[i])
        w = w - sgd_learning_rate * grad_w
        b = b - sgd_learning_rate * grad_b
        l += loss(x[i], y[i])
    sgd_losses.append(l / y.shape[0])
w_sgd, b_sgd = w.copy(), b.copy()
plt.figure()
plt.semilogy(sgd_losses)
""",
    # enumerate, other names, two figures.
    """
w = w_init.copy()
b = b_init.copy()
sgd_losses = []
for epoch in range(n_epochs):
    epoch_total = 0.0
    for i, (features, label) in enumerate(zip(x, y)):
        step_w, step_b = gradient(features, label)
        w = w - sgd_learning_rate * step_w
        b = b - sgd_learning_rate * step_b
        epoch_total += float(loss(features, label)[0])
    sgd_losses.append(epoch_total / N)
w_sgd = w.copy()
b_sgd = b.copy()
plt.figure()
plt.plot(sgd_losses)
plt.figure()
plt.semilogy(sgd_losses)
plt.show()
""",
]

GD_LOOP = [
    # Vectorised NumPy.
    """
w = w_init.copy()
b = b_init.copy()
gd_losses = []
for epoch in range(n_epochs):
    r = x @ w + b - y
    gd_losses.append(float(np.mean(r**2)))
    grad_w = 2 * x.T @ r / N
    grad_b = np.array([2 * r.mean()])
    w = w - gd_learning_rate * grad_w
    b = b - gd_learning_rate * grad_b
w_gd, b_gd = w.copy(), b.copy()
plt.figure()
plt.plot(gd_losses)
plt.yscale("log")
""",
    # The seed's style: gradient() twice per example, 1-element arrays in the log.
    """
w = w_init.copy()
b = b_init.copy()
gd_losses = []
for epoch in range(n_epochs):
    grad_w = np.array([0.0, 0.0])
    grad_b = np.array([0.0])
    l = 0
    for x_i, y_i in zip(x, y):
        grad_w += gradient(x_i, y_i)[0]
        grad_b += gradient(x_i, y_i)[1]
        l += loss(x_i, y_i)
    grad_w /= N
    grad_b /= N
    w = w - gd_learning_rate * grad_w
    b = b - gd_learning_rate * grad_b
    gd_losses.append(l / y.shape[0])
w_gd = w.copy()
b_gd = b.copy()
""",
    # The mean of the per-example gradients with np.mean, loss() on all examples at once,
    # updates in place.
    """
w = w_init.copy()
b = b_init.copy()
gd_losses = []
for _ in range(n_epochs):
    grads = [gradient(x_i, y_i) for x_i, y_i in zip(x, y)]
    grad_w = np.mean([g[0] for g in grads], axis=0)
    grad_b = np.mean([g[1] for g in grads], axis=0)
    gd_losses.append(np.mean(loss(x, y)))
    w -= gd_learning_rate * grad_w
    b -= gd_learning_rate * grad_b
w_gd = w.copy()
b_gd = b.copy()
""",
]

AUTOGRAD_LOOP = [
    # torch.optim.SGD and F.mse_loss.
    """
w_v = w_init_t.clone().to(device).requires_grad_(True)
b_v = b_init_t.clone().to(device).requires_grad_(True)
opt = torch.optim.SGD([w_v, b_v], lr=gd_learning_rate)
autograd_losses = []
for epoch in range(n_epochs):
    opt.zero_grad()
    loss_t = torch.nn.functional.mse_loss(x_t @ w_v + b_v, y_t)
    loss_t.backward()
    opt.step()
    autograd_losses.append(loss_t.item())
""",
    # Gradients reset to None first, a sum divided by N, sub_ in place.
    """
w_v = w_init_t.clone().to(device)
w_v.requires_grad = True
b_v = b_init_t.clone().to(device)
b_v.requires_grad = True
autograd_losses = []
for epoch in range(n_epochs):
    w_v.grad = None
    b_v.grad = None
    residual = x_t @ w_v + b_v - y_t
    mse = (residual**2).sum() / N
    mse.backward()
    with torch.no_grad():
        w_v.sub_(gd_learning_rate * w_v.grad)
        b_v.sub_(gd_learning_rate * b_v.grad)
    autograd_losses.append(float(mse))
""",
    # torch.autograd.grad and new tensors each epoch (not in place).
    """
w_v = w_init_t.clone().to(device).requires_grad_(True)
b_v = b_init_t.clone().to(device).requires_grad_(True)
autograd_losses = []
for epoch in range(n_epochs):
    loss_t = torch.mean((x_t @ w_v + b_v - y_t) ** 2)
    g_w, g_b = torch.autograd.grad(loss_t, [w_v, b_v])
    autograd_losses.append(loss_t.item())
    w_v = (w_v - gd_learning_rate * g_w).detach().requires_grad_(True)
    b_v = (b_v - gd_learning_rate * g_b).detach().requires_grad_(True)
""",
]

MSE_COST = [
    """
def mse_cost(yhat, y):
    return torch.sum((yhat - y) ** 2) / y.numel()
""",
    """
def mse_cost(predictions, targets):
    difference = predictions - targets
    return difference.square().mean()
""",
    """
def mse_cost(yhat, y):
    return torch.mean(torch.pow((yhat - y).reshape(-1), 2))
""",
]

TRAINING_LOOP = [
    # zero_grad just before backward, other names.
    """
costs = []
for epoch in range(epochs):
    prediction = model(x_pt)
    current = mse_cost(prediction, y_pt)
    optimizer.zero_grad()
    current.backward()
    optimizer.step()
    costs.append(current.item())
    print(epoch, current.item())
""",
    # The update by hand (plain SGD, the same maths), a NumPy array for the log.
    """
history = []
for epoch in range(epochs):
    cost = mse_cost(model(x_pt), y_pt)
    model.zero_grad()
    cost.backward()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= learning_rate * parameter.grad
    history.append(cost.item())
costs = np.array(history)
""",
    # A fresh plain SGD optimiser, a `while` loop, float(), a plot without plt.figure().
    """
sgd = torch.optim.SGD(model.parameters(), lr=learning_rate)
costs = []
while len(costs) < epochs:
    sgd.zero_grad()
    cost = mse_cost(model(x_pt), y_pt)
    cost.backward()
    sgd.step()
    costs.append(float(cost))
plt.plot(costs)
""",
]

MANUAL_MSE_GRADIENTS = [
    # detach() instead of torch.no_grad(), N * k from the shape.
    """
def manual_mse_gradients(linear, xs, ys):
    W = linear.weight.detach()
    b = linear.bias.detach()
    n, k = ys.shape
    r = xs @ W.T + b - ys
    return 2 / (n * k) * r.T @ xs, 2 / (n * k) * r.sum(0)
""",
    # torch.addmm and torch.einsum.
    """
def manual_mse_gradients(linear, xs, ys):
    with torch.no_grad():
        residual = torch.addmm(linear.bias, xs, linear.weight.t()) - ys
        factor = 2.0 / ys.numel()
        return factor * torch.einsum("nk,nd->kd", residual, xs), factor * residual.sum(dim=0)
""",
    # One output at a time.
    """
def manual_mse_gradients(linear, xs, ys):
    weight, bias = linear.weight.detach(), linear.bias.detach()
    n = xs.shape[0]
    k = weight.shape[0]
    grad_weight = torch.zeros_like(weight)
    grad_bias = torch.zeros_like(bias)
    for j in range(k):
        r_j = xs @ weight[j] + bias[j] - ys[:, j]
        grad_weight[j] = 2 * (r_j @ xs) / (n * k)
        grad_bias[j] = 2 * r_j.sum() / (n * k)
    return grad_weight, grad_bias
""",
]

LINEAR_TRAINING = [
    # zero_grad first, F.mse_loss.
    """
import torch.nn.functional as F

optimizer = optim.SGD(linear_model.parameters(), lr=learning_rate)
linear_losses = []
for epoch in range(n_epochs):
    optimizer.zero_grad()
    loss = F.mse_loss(linear_model(xs), ys_true)
    loss.backward()
    optimizer.step()
    linear_losses.append(loss.item())
""",
    # The update by hand, its own MSE, a stacked tensor for the log.
    """
history = []
for epoch in range(n_epochs):
    loss = ((linear_model(xs) - ys_true) ** 2).mean()
    linear_model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in linear_model.parameters():
            parameter.sub_(learning_rate * parameter.grad)
    history.append(loss.detach())
linear_losses = torch.stack(history)
""",
    # A `while` loop, zero_grad(set_to_none=True), a semilogy plot without plt.figure().
    """
mse = nn.MSELoss()
sgd = optim.SGD(linear_model.parameters(), lr=learning_rate, momentum=0.0)
linear_losses = []
while len(linear_losses) < n_epochs:
    loss = mse(linear_model(xs), ys_true)
    sgd.zero_grad(set_to_none=True)
    loss.backward()
    sgd.step()
    linear_losses.append(float(loss))
plt.semilogy(linear_losses)
""",
]

LOGISTIC_TRAINING = [
    # torch.autograd.grad and the update by hand, a tensor for the log, a flat (30,) tensor of
    # probabilities.
    """
criterion = nn.BCEWithLogitsLoss()
history = []
for epoch in range(n_epochs):
    loss = criterion(logistic_model(xs_cls), ys_cls)
    weight_grad, bias_grad = torch.autograd.grad(
        loss, [logistic_model.weight, logistic_model.bias]
    )
    with torch.no_grad():
        logistic_model.weight.sub_(learning_rate * weight_grad)
        logistic_model.bias.sub_(learning_rate * bias_grad)
    history.append(loss.item())
logistic_losses = torch.tensor(history)
with torch.no_grad():
    probabilities = logistic_model(xs_cls).sigmoid().reshape(-1)
""",
    # The loss's function form, probabilities as a NumPy array.
    """
import torch.nn.functional as F

optimizer = optim.SGD(logistic_model.parameters(), lr=learning_rate)
logistic_losses = []
for epoch in range(n_epochs):
    optimizer.zero_grad()
    loss = F.binary_cross_entropy_with_logits(logistic_model(xs_cls), ys_cls)
    loss.backward()
    optimizer.step()
    logistic_losses.append(loss.item())
with torch.no_grad():
    probabilities = torch.sigmoid(logistic_model(xs_cls)).cpu().numpy()
""",
    # Other names, probabilities as a list of floats.
    """
bce = nn.BCEWithLogitsLoss()
sgd = optim.SGD(logistic_model.parameters(), lr=learning_rate)
logistic_losses = []
for _ in range(n_epochs):
    scores = logistic_model(xs_cls)
    objective = bce(scores, ys_cls)
    sgd.zero_grad()
    objective.backward()
    sgd.step()
    logistic_losses.append(objective.item())
probabilities = torch.sigmoid(logistic_model(xs_cls)).detach().reshape(-1).tolist()
""",
]

TANH_DERIVATIVE = [
    # 1 / cosh², plotted without plt.figure().
    """
def f_prime(x):
    return 1 / torch.cosh(x) ** 2


plt.plot(x_grid.detach(), f_prime(x_grid.detach()))
""",
    # 4 / (e^x + e^-x)²: the denominator overflows to inf and the result is 0, which is right.
    """
def f_prime(x):
    return 4 / (torch.exp(x) + torch.exp(-x)) ** 2
""",
    # (1 - tanh)(1 + tanh), and a second figure.
    """
def f_prime(values):
    t = torch.tanh(values)
    return (1 - t) * (1 + t)


plt.figure()
plt.plot(x_plot, f_prime(x_grid).detach() - grads.detach())
plt.title("f_prime minus autograd")
plt.show()
""",
]

NONLINEAR_TRAINING = [
    # AdamW.
    """
optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
losses = []
for step in range(2000):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
""",
    # RMSprop, a tensor for the log.
    """
optimizer = torch.optim.RMSprop(model.parameters(), lr=0.01)
history = []
for step in range(2000):
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history.append(loss.detach())
losses = torch.stack(history)
""",
    # Mini-batches of 100 points, shuffled every epoch, with Adam.
    """
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
losses = []
for epoch in range(100):
    order = torch.randperm(len(x), device=x.device)
    for start in range(0, len(x), 100):
        batch = order[start : start + 100]
        loss = criterion(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
""",
]

# notebook -> TO DO cell -> its alternatives (the sources of the whole cell)
ALTERNATIVES: dict[str, dict[str, list[str]]] = {
    "01_autograd_basics": {"parabola_descent": PARABOLA_DESCENT, "curve_fit": CURVE_FIT},
    "02_linear_regression_numpy": {
        "manual_gradient": MANUAL_GRADIENT,
        "sgd_loop": SGD_LOOP,
        "gd_loop": GD_LOOP,
        "autograd_loop": AUTOGRAD_LOOP,
    },
    "03_linear_regression_module": {"mse_cost": MSE_COST, "training_loop": TRAINING_LOOP},
    "04_autodiff_regression": {
        "manual_mse_gradients": MANUAL_MSE_GRADIENTS,
        "linear_training": LINEAR_TRAINING,
        "logistic_training": LOGISTIC_TRAINING,
    },
    "05_nonlinear_regression": {
        "tanh_derivative": TANH_DERIVATIVE,
        "nonlinear_training": NONLINEAR_TRAINING,
    },
}
OTHER_FORMS = 1  # the variant that holds arrays, tensors and other layouts


def with_cells(name: str, sources: dict[str, str]) -> NotebookNode:
    """The solution notebook `name` with the TO DO cells in `sources` replaced."""
    nb = solution(name)
    for gid, source in sources.items():
        cell_of(nb, gid).source = source.strip("\n")
    return nb


def variant(name: str, k: int) -> NotebookNode:
    """The solution notebook with the `k`-th alternative in every TO DO cell that has one."""
    cells = ALTERNATIVES[name].items()
    return with_cells(name, {gid: sources[k] for gid, sources in cells if k < len(sources)})


NO_NEW_FIGURE = "02_no_new_figure_after_a_3d_plot"  # the folder of the last test's notebook


def no_new_figure_after_a_3d_plot() -> NotebookNode:
    """02's solution drawing its loops' losses without `plt.figure()` after the 3-D plots."""
    # The locked cells before both loops draw in 3-D: only because the grader closes figures after
    # every cell, as Jupyter's inline backend does, does plt.plot get fresh 2-D axes here.
    nb = solution("02_linear_regression_numpy")
    for gid in ("sgd_loop", "gd_loop"):
        cell = cell_of(nb, gid)
        assert "plt.figure(figsize=(7, 4))\n" in cell.source
        cell.source = cell.source.replace("plt.figure(figsize=(7, 4))\n", "")
    cell_of(nb, "gd_loop").source = cell_of(nb, "gd_loop").source.replace(
        "plt.plot(gd_losses)", "plt.semilogy(gd_losses)"
    )
    return nb


@pytest.fixture(scope="module")
def lost(course: Config, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """Every variant of every notebook, and the notebook of the last test, graded in one batch:
    the checks each folder lost, `check` -> message."""
    folder = tmp_path_factory.mktemp("alternatives")
    paths = [
        write(variant(name, k), folder / f"{name}-variant{k}", name)
        for name in NOTEBOOKS
        for k in range(max(len(sources) for sources in ALTERNATIVES[name].values()))
    ]
    paths.append(
        write(no_new_figure_after_a_3d_plot(), folder / NO_NEW_FIGURE, "02_linear_regression_numpy")
    )
    with LocalRunner() as runner:  # a zygote of its own: the runner owns the one it forks from
        results = check_notebooks(paths, course, runner=runner)
    assert len(results) == len(paths) and not any(result.error for result in results)
    return {
        Path(result.path).parent.name: {
            check_id(check): check.message for check in result.checks if not check.passed
        }
        for result in results
    }


def test_every_todo_cell_has_at_least_three_alternatives() -> None:
    assert sorted(ALTERNATIVES) == NOTEBOOKS
    for name, cells in ALTERNATIVES.items():
        assert list(cells) == todo_ids(solution(name))
        assert all(len(sources) >= 3 for sources in cells.values()), name


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_alternatives_keep_every_point(lost: dict[str, dict[str, str]], name: str) -> None:
    variants = {
        folder: checks for folder, checks in lost.items() if folder.startswith(f"{name}-variant")
    }
    assert len(variants) >= 3 and all(checks == {} for checks in variants.values()), variants


def test_locked_cells_display_other_forms_of_the_results(zygote: Zygote | None) -> None:
    notebooks = {name: variant(name, OTHER_FORMS) for name in NOTEBOOKS}
    executed = run_notebooks(notebooks, Limits(cell_timeout=60, notebook_timeout=120), zygote)
    assert {
        name: [(c.grade_id, c.ename, c.evalue) for c in run.cells if c.status != "ok"]
        for name, run in executed.items()
    } == {name: [] for name in NOTEBOOKS}


def test_plotting_without_a_new_figure_after_a_3d_plot_keeps_every_point(
    lost: dict[str, dict[str, str]],
) -> None:
    assert lost[NO_NEW_FIGURE] == {}
