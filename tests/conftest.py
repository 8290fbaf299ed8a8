"""Shared fixtures: the bundled course, a notebook factory and submission builders."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from jupyter_core.utils import ensure_event_loop
from nbformat import NotebookNode

from grader.assign import assign
from grader.config import Config, load_config
from grader.engine.client import Zygote, start_zygote
from grader.engine.runs import RUN_ROOT
from grader.execute import ExecutedNotebook, Limits, run_notebook
from grader.notebook import grade_id
from grader.pool import KernelPool

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = [
    "01_autograd_basics",
    "02_linear_regression_numpy",
    "03_linear_regression_module",
    "04_autodiff_regression",
    "05_nonlinear_regression",
]


@pytest.fixture(scope="session", autouse=True)
def hidden_secret() -> Iterator[None]:
    """A hidden-variant secret for the suite, so that no test makes one in the source tree (the
    one the scenario tables' expected verdicts were written under)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADER_HIDDEN_SEED", "1729")
        yield


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of reference runs for the whole session (they depend only on the course)."""
    return tmp_path_factory.mktemp("grader-cache")


@pytest.fixture(scope="module")  # frozen: module-scoped fixtures that grade once may use it
def course(reference_cache: Path) -> Config:
    """The bundled course, with its reference cache outside the source tree."""
    return dataclasses.replace(load_config(ROOT), cache_dir=str(reference_cache))


def make_cell(
    source: str, gid: str, *, todo: bool = False, tags: list[str] | None = None
) -> NotebookNode:
    """One code cell with nbgrader metadata."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": False,
        "grade_id": gid,
        "locked": not todo,
        "schema_version": 3,
        "solution": todo,
        "task": False,
    }
    if tags:
        cell.metadata["tags"] = tags
    return cell


def make_notebook(cells: list[NotebookNode]) -> NotebookNode:
    """A notebook holding `cells`."""
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


def solution(name: str) -> NotebookNode:
    """A fresh copy of a bundled solution notebook."""
    return nbformat.read(ROOT / "solutions" / f"{name}.ipynb", as_version=4)


def cell_of(nb: NotebookNode, gid: str) -> NotebookNode:
    """The cell with grade id `gid`."""
    (cell,) = [cell for cell in nb.cells if grade_id(cell) == gid]
    return cell


def edit_solution(name: str, gid: str, old: str, new: str) -> NotebookNode:
    """The solution notebook with `old` replaced by `new` in cell `gid` (which must contain it)."""
    nb = solution(name)
    cell = cell_of(nb, gid)
    assert old in cell.source, f"{old!r} is not in {name}:{gid}"
    cell.source = cell.source.replace(old, new)
    return nb


def write(nb: NotebookNode, folder: Path, name: str) -> Path:
    """Save `nb` as `folder/name.ipynb`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


# A miniature course, so that end-to-end cases run fast. Its two TO DO cells are independent:
# `first` defines `answer` (21 * scale), `second` defines `double(x)`.
MINI_CHECKS = """
import pytest

VALUES = ["answer"]


def hidden_parameters(parameters, rng):
    return {"scale": 3.0}


def calls(parameters, rng):
    from grader.extract import Call
    return [Call("double", [(1.5,), (-4,)])]


@pytest.mark.grade("first", points=1)
def test_answer(student, reference):
    assert student.value("answer") == reference.value("answer"), "wrong answer"


@pytest.mark.grade("second", points=1)
def test_double(student):
    for case in student.cases("double"):
        assert case.error is None and case.output == 2 * case.args[0], "double is wrong"
"""


def mini_solution(
    first: str = "answer = 21 * scale", second: str = "def double(x):\n    return 2 * x"
) -> NotebookNode:
    """The mini solution notebook, with the given code in its two TO DO cells."""
    return make_notebook(
        [
            make_cell("import math", "imports"),
            make_cell("seed = 0\ndevice = 'cpu'\nscale = 2.0", "parameters", tags=["parameters"]),
            make_cell(f"### BEGIN SOLUTION\n{first}\n### END SOLUTION", "first", todo=True),
            make_cell("between = 1", "between"),
            make_cell(f"### BEGIN SOLUTION\n{second}\n### END SOLUTION", "second", todo=True),
        ]
    )


@pytest.fixture(scope="session")
def mini_course(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("mini-course")
    (root / "pyproject.toml").write_text(
        "[tool.grader]\ncell_timeout = 4\nnotebook_timeout = 40\nmemory_limit_mb = 1536\n"
        "process_limit = 32\noutput_limit_kb = 64\n",
        encoding="utf-8",
    )
    for name in ("01_mini", "02_mini"):
        write(mini_solution(), root / "solutions", name)
        (root / "checks").mkdir(exist_ok=True)
        (root / "checks" / f"{name}.py").write_text(MINI_CHECKS, encoding="utf-8")
    config = dataclasses.replace(load_config(root), device="cpu")
    assign(config)
    return config


def submission(folder: Path, first: str, name: str = "01_mini") -> Path:
    """A submission whose `first` cell holds `first` (and whose `second` cell is right)."""
    return write(mini_solution(first=first), folder, name)


def own_run_dirs(pid: int | None = None) -> set[str]:
    """The run and zygote directories of the grader with process id `pid` (default: this one)."""
    prefixes = tuple(f"grader-{kind}-{pid or os.getpid()}-" for kind in ("run", "zygote"))
    return {name for name in os.listdir(RUN_ROOT) if name.startswith(prefixes)}


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote | None]:
    """One kernel zygote for a module's kernel tests (None where kernels are not forked): a run
    or a batch of its own starts one, about 2 s of imports each time."""
    with start_zygote() as started:
        yield started


def run_notebooks(
    notebooks: dict[str, NotebookNode], limits: Limits, zygote: Zygote | None, workers: int = 2
) -> dict[str, ExecutedNotebook]:
    """Each notebook run top to bottom in a fresh kernel of its own, as `run_notebook` runs it,
    `workers` at a time, the kernels forked from one `zygote`."""

    def run(nb: NotebookNode) -> ExecutedNotebook:
        try:
            with KernelPool(limits.resources, limits.threads, 0, zygote) as kernels:
                return run_notebook(nb, [], limits, kernels)
        finally:
            ensure_event_loop().close()  # the loop jupyter_client made for this thread

    with ThreadPoolExecutor(workers) as executor:
        return dict(zip(notebooks, executor.map(run, notebooks.values()), strict=True))
