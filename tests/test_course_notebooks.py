"""The bundled notebooks: structure, metadata, and how they run."""

from __future__ import annotations

import nbformat
import pytest

from grader.engine.client import Zygote
from grader.execute import ExecutedNotebook, Limits
from grader.notebook import (
    grade_id,
    is_parameters,
    is_todo,
    read_course_notebook,
    read_parameters,
    todo_ids,
)
from tests.conftest import NOTEBOOKS, ROOT, run_notebooks

TODO_IDS = {
    "01_autograd_basics": ["parabola_descent", "curve_fit"],
    "02_linear_regression_numpy": ["manual_gradient", "sgd_loop", "gd_loop", "autograd_loop"],
    "03_linear_regression_module": ["mse_cost", "training_loop"],
    "04_autodiff_regression": ["manual_mse_gradients", "linear_training", "logistic_training"],
    "05_nonlinear_regression": ["tanh_derivative", "nonlinear_training"],
}
FORBIDDEN = ["%pylab", "from pylab", "Axes3D(", "F.sigmoid", "torch.FloatTensor", "%matplotlib"]


@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_metadata_follows_the_nbgrader_convention(folder: str, name: str) -> None:
    nb = read_course_notebook(ROOT / folder / f"{name}.ipynb")
    assert todo_ids(nb) == TODO_IDS[name]
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        assert meta["schema_version"] == 3 and meta["grade"] is False
        assert meta["solution"] is is_todo(cell) and meta["locked"] is not is_todo(cell)
        assert cell.cell_type == "code" or not is_todo(cell)
    assert [grade_id(cell) for cell in nb.cells if is_parameters(cell)] == ["parameters"]
    parameters = read_parameters(nb, name)
    assert isinstance(parameters["seed"], int) and parameters["device"] == "cpu"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solutions_are_modern_and_clean(name: str) -> None:
    nb = nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        for pattern in FORBIDDEN:
            assert pattern not in cell.source, f"{grade_id(cell)} uses {pattern}"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.fixture(scope="module")
def executed(zygote: Zygote | None) -> dict[str, ExecutedNotebook]:
    """Every solution and exercise run top to bottom once, as `folder/name`."""
    notebooks = {
        f"{folder}/{name}": nbformat.read(ROOT / folder / f"{name}.ipynb", as_version=4)
        for folder in ("solutions", "exercises")
        for name in NOTEBOOKS
    }
    return run_notebooks(notebooks, Limits(cell_timeout=60, notebook_timeout=60), zygote)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solution_runs_top_to_bottom_without_error(
    executed: dict[str, ExecutedNotebook], name: str
) -> None:
    run = executed[f"solutions/{name}"]
    assert [(c.grade_id, c.status, c.evalue) for c in run.cells if c.status != "ok"] == []
    assert run.seconds < 60


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_exercise_raises_not_implemented_in_each_todo_cell_only(
    executed: dict[str, ExecutedNotebook], name: str
) -> None:
    run = executed[f"exercises/{name}"]
    raising = [c.grade_id for c in run.cells if c.ename == "NotImplementedError"]
    assert raising == TODO_IDS[name]
    for cell in run.cells:
        assert cell.status in ("ok", "error") and cell.ename in (
            "",
            "NotImplementedError",
            "NameError",
        )
