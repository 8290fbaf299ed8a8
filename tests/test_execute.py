"""Running notebooks: kernels behave as the notebook's students' Jupyter does."""

from __future__ import annotations

import pytest

from grader.execute import Limits, run_notebook
from tests.conftest import make_cell, make_notebook

pytestmark = pytest.mark.slow

IPYTHON_NAMES = ["In", "Out", "exit", "get_ipython", "open", "quit"]


def test_figures_are_closed_after_every_cell_as_the_inline_backend_does() -> None:
    nb = make_notebook(
        [
            make_cell(
                f"assert sorted(n for n in globals() if n[0] != '_') == {IPYTHON_NAMES!r}",
                "nothing_bound",
            ),
            make_cell(
                "import matplotlib.pyplot as plt\nimport numpy as np\n"
                "x, y = np.meshgrid([0.0, 1.0], [0.0, 1.0])\n"
                "plt.figure().add_subplot(projection='3d').plot_surface(x, y, x + y)",
                "surface",
            ),
            make_cell(
                "sgd_losses = [1.0, 0.5, 0.25]\nplt.plot(sgd_losses)\nplt.semilogy(sgd_losses)",
                "loss_plot",
                todo=True,
            ),
            make_cell("assert len(plt.get_fignums()) == 0, plt.get_fignums()", "closed"),
        ]
    )
    run = run_notebook(nb, [], Limits(cell_timeout=30, notebook_timeout=120))
    assert [(cell.grade_id, cell.status, cell.evalue) for cell in run.cells] == [
        (gid, "ok", "") for gid in ("nothing_bound", "surface", "loss_plot", "closed")
    ]


def test_an_error_past_the_output_limit_still_fails_its_cell() -> None:
    nb = make_notebook(
        [
            make_cell("print('x' * 4096)\nraise ValueError('y' * 8192)", "loud", todo=True),
            make_cell("answer = 1", "after"),
        ]
    )
    run = run_notebook(nb, [], Limits(cell_timeout=30, notebook_timeout=120, output_kb=2))
    loud, after = run.cells
    assert (loud.status, loud.ename) == ("error", "ValueError") and loud.evalue.startswith("yyy")
    assert after.status == "ok"
