"""Follow-through credit: a TO DO cell that is wrong only because an earlier TO DO cell it uses
is wrong keeps its points, found on one more run with that earlier cell taken from the solution.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nbformat import NotebookNode

import grader.grading
from grader.assign import assign
from grader.check import FollowThrough, credit_follow_through, plan_follow_through
from grader.config import Config, load_config
from grader.course import find_exercises, load_check_spec
from grader.errors import CourseError
from grader.grading import check_notebooks
from grader.notebook import grade_id, is_todo
from grader.prepare import check_dependencies, edited_todo_cells, with_solution_cells
from grader.report import check_id
from grader.results import FAILED, PASSED, CheckResult, NotebookResult
from tests.conftest import (
    NOTEBOOKS,
    ROOT,
    cell_of,
    make_cell,
    make_notebook,
    solution,
    write,
)

GRADIENT = {"sgd_loop": {"manual_gradient": "gradient"}, "gd_loop": {"manual_gradient": "gradient"}}


# --- the declarations: every dependency of the five notebooks, and only those ---------------


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name a cell binds anywhere (assignments, loops, defs, arguments, imports)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def _top_level_names(tree: ast.Module) -> set[str]:
    """The names a cell leaves in the notebook's namespace (not those local to its functions)."""
    names: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        if not isinstance(node, (ast.Lambda, ast.comprehension, ast.ListComp, ast.GeneratorExp)):
            pending.extend(ast.iter_child_nodes(node))
    return names


def inferred_dependencies(nb: NotebookNode) -> dict[str, dict[str, set[str]]]:
    """{TO DO cell: {earlier TO DO cell: the names it reads that this one last defined}}, from
    the solution's code, cell by cell in order."""
    definer: dict[str, str] = {}
    todo = {grade_id(cell) for cell in nb.cells if is_todo(cell)}
    found: dict[str, dict[str, set[str]]] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = str(grade_id(cell))
        tree = ast.parse(cell.source)
        loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - _bound_names(tree)
        for name in loaded:
            if definer.get(name) in todo and gid in todo:
                found.setdefault(gid, {}).setdefault(definer[name], set()).add(name)
        definer.update(dict.fromkeys(_top_level_names(tree), gid))
    return found


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_each_checks_module_declares_exactly_the_dependencies_of_its_notebook(name: str) -> None:
    exercise = find_exercises(load_config(ROOT))[name]
    declared = load_check_spec(exercise).depends_on
    inferred = inferred_dependencies(solution(name))
    assert {cell: set(uses) for cell, uses in declared.items()} == {
        cell: set(uses) for cell, uses in inferred.items()
    }
    for cell, uses in declared.items():
        for used, function in uses.items():
            assert function in inferred[cell][used], (cell, used, function)


def test_the_bundled_dependencies_are_the_loops_of_02_and_the_training_of_03() -> None:
    exercises = find_exercises(load_config(ROOT))
    specs = {name: load_check_spec(exercises[name]).depends_on for name in NOTEBOOKS}
    assert specs["02_linear_regression_numpy"] == GRADIENT
    assert specs["03_linear_regression_module"] == {"training_loop": {"mse_cost": "mse_cost"}}
    assert [name for name, uses in specs.items() if uses] == [
        "02_linear_regression_numpy",
        "03_linear_regression_module",
    ]


@pytest.mark.parametrize(
    ("depends_on", "problem"),
    [
        ({"second": {"nowhere": "f"}}, "`nowhere`, which is not a TO DO cell"),
        ({"between": {"first": "f"}}, "`between`, which is not a TO DO cell"),
        ({"first": {"second": "double"}}, "`first` uses `second`, which is not above it"),
        ({"first": {"first": "answer"}}, "`first` uses `first`, which is not above it"),
    ],
)
def test_a_declaration_that_does_not_fit_the_notebook_is_a_course_error(
    depends_on: dict[str, dict[str, str]], problem: str
) -> None:
    nb = _mini_notebook()
    with pytest.raises(CourseError, match=problem):
        check_dependencies(nb, "mini", depends_on)
    check_dependencies(nb, "mini", {"second": {"first": "half"}})


@pytest.mark.parametrize(
    "declared", ["sgd_loop", {"sgd_loop": "gradient"}, {"sgd_loop": {"manual_gradient": 1}}]
)
def test_a_malformed_declaration_is_a_course_error(tmp_path: Path, declared: object) -> None:
    checks = tmp_path / "checks" / "01_mini.py"
    checks.parent.mkdir()
    checks.write_text(f"VALUES = []\nDEPENDS_ON = {declared!r}\n", encoding="utf-8")
    exercise = dataclasses.replace(
        find_exercises(load_config(ROOT))["01_autograd_basics"], checks_path=checks
    )
    with pytest.raises(CourseError, match="DEPENDS_ON must map a TO DO cell"):
        load_check_spec(exercise)


# --- which cells a follow-through run takes from the solution, and which it grades -----------


def check(gid: str, name: str, passed: bool, message: str = "", points: float = 1) -> CheckResult:
    status = PASSED if passed else FAILED
    return CheckResult("02", gid, name, points, points if passed else 0.0, status, message)


FIRST_PASS = [
    check(
        "manual_gradient", "gradient_matches_autograd", False, "dℓ/dw is off by a factor of 2: x"
    ),
    check("sgd_loop", "check0", False, "`w_sgd` is wrong: got [1, 2]", points=2),
    check("sgd_loop", "check1", False, "`sgd_losses` departs"),
    check("gd_loop", "check0", False, "`w_gd` is wrong"),
    check("autograd_loop", "autograd_agrees_with_gd", True),
]
ALL_EDITED = frozenset({"manual_gradient", "sgd_loop", "gd_loop", "autograd_loop"})


def test_a_notebook_without_a_failed_prerequisite_needs_no_more_runs() -> None:
    gradient_right = FIRST_PASS[1:]
    assert plan_follow_through(gradient_right, GRADIENT, ALL_EDITED) is None
    loops_right = [FIRST_PASS[0], check("sgd_loop", "sgd_losses", True)]
    assert plan_follow_through(loops_right, GRADIENT, ALL_EDITED) is None
    assert plan_follow_through(FIRST_PASS, {}, ALL_EDITED) is None


def test_loops_left_as_the_placeholder_are_not_run_again() -> None:
    assert plan_follow_through(FIRST_PASS, GRADIENT, frozenset({"manual_gradient"})) is None
    plan = plan_follow_through(FIRST_PASS, GRADIENT, frozenset({"gd_loop"}))
    assert plan == FollowThrough(("manual_gradient",), ("gd_loop",))


def test_one_run_substitutes_every_failed_prerequisite_for_every_failed_dependent() -> None:
    plan = plan_follow_through(FIRST_PASS, GRADIENT, ALL_EDITED)
    assert plan == FollowThrough(("manual_gradient",), ("gd_loop", "sgd_loop"))
    # A cell that is substituted is not graded again: follow-through is one level deep.
    chain = {"b": {"a": "f"}, "c": {"b": "g"}}
    failed = [check(cell, "x", False, "wrong") for cell in "abc"]
    assert plan_follow_through(failed, chain, frozenset("abc")) == FollowThrough(("a", "b"), ("c",))


PLAN = FollowThrough(("manual_gradient",), ("gd_loop", "sgd_loop"))
LEAK = "SECRET-FROM-THE-SUBSTITUTED-RUN"


def substituted(**cells: list[bool]) -> list[CheckResult]:
    """Checks of a follow-through run, every message a secret that must not reach the student."""
    return [
        check(gid, f"check{index}", passed, "" if passed else f"{LEAK} {gid}")
        for gid, verdicts in cells.items()
        for index, passed in enumerate(verdicts)
    ] + [check("manual_gradient", "gradient_matches_autograd", True, f"{LEAK} solution")]


def credited(plan: FollowThrough, after: list[CheckResult]) -> dict[str, CheckResult]:
    result = credit_follow_through(FIRST_PASS, plan, after, GRADIENT)
    assert LEAK not in json.dumps([dataclasses.asdict(c) for c in result])
    return {f"{c.grade_id}::{c.name}": c for c in result}


def test_dependents_that_pass_with_the_solutions_cell_get_full_points_and_say_why() -> None:
    result = credited(PLAN, substituted(sgd_loop=[True, True], gd_loop=[True]))
    assert result["manual_gradient::gradient_matches_autograd"].score == 0
    for key in ("sgd_loop::check0", "sgd_loop::check1", "gd_loop::check0"):
        assert result[key].passed and result[key].score == result[key].points
        cell = key.split("::")[0]
        assert result[key].message == (
            "full points by follow-through: your `gradient` is wrong (dℓ/dw is off by a factor "
            f"of 2; see cell `manual_gradient`) and `{cell}` uses it; with the reference "
            f"solution's `gradient`, `{cell}` passes, so that one mistake costs points only in "
            "cell `manual_gradient`"
        )
    assert result["autograd_loop::autograd_agrees_with_gd"].message == ""


def test_a_dependent_wrong_by_itself_gains_nothing_and_is_told_so() -> None:
    # sgd_loop's check1 fails even with the solution's gradient: the whole cell keeps its verdicts.
    result = credited(PLAN, substituted(sgd_loop=[True, False], gd_loop=[True]))
    own, other = result["sgd_loop::check1"], result["sgd_loop::check0"]
    assert (own.score, other.score) == (0, 0)
    assert own.message.startswith("`sgd_losses` departs (your `gradient` is wrong (")
    assert "this check fails even with the reference solution's `gradient`" in own.message
    assert other.message.startswith("`w_sgd` is wrong: got [1, 2] (your `gradient` is wrong")
    assert "this check passes, but other checks of `sgd_loop` do not" in other.message
    assert result["gd_loop::check0"].passed


def test_a_dependent_missing_from_the_follow_through_run_gains_nothing() -> None:
    result = credited(PLAN, substituted(gd_loop=[True]))
    assert result["sgd_loop::check0"].score == result["sgd_loop::check1"].score == 0
    assert result["gd_loop::check0"].passed


# --- preparing the follow-through notebook ---------------------------------------------------


def _mini_notebook(first: str = "def half(x):\n    return x / 2") -> NotebookNode:
    return make_notebook(
        [
            make_cell("import math", "imports"),
            make_cell("seed = 0\ndevice = 'cpu'\nscale = 2.0", "parameters", tags=["parameters"]),
            make_cell(f"### BEGIN SOLUTION\n{first}\n### END SOLUTION", "first", todo=True),
            make_cell("between = 1", "between"),
            make_cell(
                "### BEGIN SOLUTION\nresult = half(10 * scale)\n### END SOLUTION",
                "second",
                todo=True,
            ),
        ]
    )


def test_the_follow_through_notebook_takes_only_the_named_todo_cells_from_the_solution() -> None:
    student = _mini_notebook("def half(x):\n    return x / 3")
    cell_of(student, "second").source = "result = 'mine'"
    cell_of(student, "between").source = "between = 'mine'"
    merged = with_solution_cells(student, _mini_notebook(), ("first", "between"))
    assert cell_of(merged, "first").source == cell_of(_mini_notebook(), "first").source
    assert cell_of(merged, "second").source == "result = 'mine'"
    assert cell_of(merged, "between").source == "between = 'mine'", "only TO DO cells"
    assert "x / 3" in cell_of(student, "first").source, "the prepared notebook is not changed"


def test_only_cells_changed_from_the_placeholder_count_as_written() -> None:
    exercise = _mini_notebook()
    for gid in ("first", "second"):
        cell_of(exercise, gid).source = "raise NotImplementedError()"
    prepared = _mini_notebook()
    cell_of(prepared, "second").source = "  raise NotImplementedError()\n"
    assert edited_todo_cells(prepared, exercise) == {"first"}


# --- end to end, through the bundled notebooks -----------------------------------------------

WRONG_GRADIENT = ("manual_gradient", "dl_dw = 2 * r * x", "dl_dw = 4 * r * x")
GRADIENT_NOT_DONE = (
    "manual_gradient",
    "def gradient(x, y):",
    "raise NotImplementedError\ndef _(x, y):",
)
SGD_REVERSED = ("sgd_loop", "in zip(x, y):", "in zip(x[::-1], y[::-1]):")
MSE_SUMS = ("mse_cost", "** 2).mean()", "** 2).sum()")
NO_ZERO_GRAD = ("training_loop", "optimizer.zero_grad()", "pass")
GD_TOO_SHORT = ("gd_loop", "for epoch in range(n_epochs):", "for epoch in range(50):")

# notebook, edits, the checks lost, the cells kept by follow-through, the follow-through
# notebooks built (each is run under every variant)
SCENARIOS: dict[str, tuple[str, list[tuple[str, str, str]], set[str], set[str], int]] = {
    "wrong_gradient_right_loops": (
        "02_linear_regression_numpy", [WRONG_GRADIENT],
        {"manual_gradient::gradient_matches_autograd"}, {"sgd_loop", "gd_loop"}, 1,
    ),
    "gradient_not_done_right_loops": (
        "02_linear_regression_numpy", [GRADIENT_NOT_DONE],
        {"manual_gradient::gradient_returns_two_arrays",
         "manual_gradient::gradient_matches_autograd"}, {"sgd_loop", "gd_loop"}, 1,
    ),
    "wrong_gradient_and_wrong_sgd_loop": (
        "02_linear_regression_numpy", [WRONG_GRADIENT, SGD_REVERSED],
        # every sgd check reads `sgd_losses`, which must follow the reference's
        {"manual_gradient::gradient_matches_autograd", "sgd_loop::sgd_matches_reference",
         "sgd_loop::sgd_losses", "sgd_loop::sgd_recovers_true_weights_and_agrees_with_gd"},
        {"gd_loop"}, 1,
    ),
    "right_gradient_wrong_gd_loop": (
        "02_linear_regression_numpy", [GD_TOO_SHORT],
        {"gd_loop::gd_matches_reference", "gd_loop::gd_losses"}, set(), 0,
    ),
    "mse_sums_right_training": (
        "03_linear_regression_module", [MSE_SUMS],
        {"mse_cost::mse_cost_matches_the_definition"}, {"training_loop"}, 1,
    ),
    "mse_sums_and_training_without_zero_grad": (
        "03_linear_regression_module", [MSE_SUMS, NO_ZERO_GRAD],
        # both training checks read `costs`, which must follow the reference's
        {"mse_cost::mse_cost_matches_the_definition",
         "training_loop::training_matches_reference", "training_loop::training_lowers_the_cost"},
        set(), 1,
    ),
}  # fmt: skip


def edited(name: str, edits: list[tuple[str, str, str]]) -> NotebookNode:
    nb = solution(name)
    for gid, old, new in edits:
        cell = cell_of(nb, gid)
        assert old in cell.source, f"{old!r} is not in {name}:{gid}"
        cell.source = cell.source.replace(old, new)
    return nb


@pytest.fixture
def follow_through_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The cells each follow-through notebook built in this test took from the solution."""
    built: list[tuple[str, ...]] = []
    original = grader.grading.with_solution_cells

    def spy(nb: NotebookNode, solution_nb: NotebookNode, cells: tuple[str, ...]) -> NotebookNode:
        built.append(cells)
        return original(nb, solution_nb, cells)

    monkeypatch.setattr(grader.grading, "with_solution_cells", spy)
    return built


def grade_one(course: Config, nb: NotebookNode, folder: Path, name: str) -> NotebookResult:
    (result,) = check_notebooks([write(nb, folder, name)], course)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_one_mistake_is_charged_once(
    course: Config, tmp_path: Path, follow_through_runs: list[tuple[str, ...]], case: str
) -> None:
    name, edits, lost, kept, runs = SCENARIOS[case]
    result = grade_one(course, edited(name, edits), tmp_path, name)
    failed = {check_id(c).split("::", 1)[1]: c.message for c in result.checks if not c.passed}
    assert set(failed) == lost, failed
    assert len(follow_through_runs) == runs
    function = "gradient" if name.startswith("02") else "mse_cost"
    prerequisite = "manual_gradient" if name.startswith("02") else "mse_cost"
    for c in result.checks:
        if c.grade_id in kept and c.message:
            assert c.message.startswith(
                f"full points by follow-through: your `{function}` is wrong"
            )
            assert f"costs points only in cell `{prerequisite}`" in c.message
        elif c.grade_id in {gid for gid, _, _ in edits} - {prerequisite} and runs and not c.passed:
            assert f"`{c.grade_id}` has a mistake of its own" in c.message
            assert f"your `{function}` is wrong" in c.message
    assert any("follow-through" in c.message for c in result.checks) == bool(kept)
    for gid in kept:
        assert all(c.passed for c in result.checks if c.grade_id == gid)
        assert any(c.message for c in result.checks if c.grade_id == gid), "the credit is said"


# A wrong `gradient` (other names than the solution's) and loops that are right, except that
# they notice when `gradient` is the solution's and then leak what they can: a value through
# `w_sgd`, the solution's names through an error.
LEAKING_GRADIENT = """def gradient(x, y):
    err = forward(np.asarray(x, dtype=float)) - np.reshape(np.asarray(y, dtype=float), -1)
    return 4 * err * x, 2 * err
"""
LEAKING_SGD = (
    "\nif 'err' not in gradient.__code__.co_varnames:\n    w_sgd = np.array([1234.5, -6789.25])\n"
)
LEAKING_GD = (
    "\nif 'err' not in gradient.__code__.co_varnames:\n"
    "    raise ValueError('SUBSTITUTED ' + repr(gradient.__code__.co_varnames))\n"
)


@pytest.mark.slow
def test_nothing_of_the_follow_through_run_reaches_the_student(
    course: Config, tmp_path: Path, follow_through_runs: list[tuple[str, ...]]
) -> None:
    nb = solution("02_linear_regression_numpy")
    cell_of(nb, "manual_gradient").source = LEAKING_GRADIENT
    sgd, gd = cell_of(nb, "sgd_loop"), cell_of(nb, "gd_loop")
    sgd.source = sgd.source.replace("b_sgd = b.copy()", "b_sgd = b.copy()" + LEAKING_SGD)
    gd.source = gd.source.replace("b_gd = b.copy()", "b_gd = b.copy()" + LEAKING_GD)
    result = grade_one(course, nb, tmp_path, "02_linear_regression_numpy")
    assert follow_through_runs == [("manual_gradient",)]  # one notebook, run under each variant
    lost = {check_id(c).split("::", 1)[1] for c in result.checks if not c.passed}
    assert {"sgd_loop::sgd_matches_reference", "gd_loop::gd_matches_reference"} <= lost
    shown = json.dumps([dataclasses.asdict(result) | {"answers": []}], ensure_ascii=False)
    for secret in ("1234.5", "6789", "SUBSTITUTED", "dl_dw', 'dl_db"):
        assert secret not in shown
    for c in result.checks:
        if c.grade_id in ("sgd_loop", "gd_loop") and not c.passed:
            assert "has a mistake of its own" in c.message


# --- stopping: Ctrl-C and grader errors behave as without follow-through ---------------------

DEPENDENT_CHECKS = """
import pytest

VALUES = ["result"]
DEPENDS_ON = {"second": {"first": "half"}}


def hidden_parameters(parameters, rng):
    return {"scale": 3.0}


def calls(parameters, rng):
    from grader.extract import Call
    return [Call("half", [(4.0,), (-3.0,)])]


@pytest.mark.grade("first", points=1)
def test_half(student):
    for case in student.cases("half"):
        assert case.error is None and case.output == case.args[0] / 2, "half is wrong"


@pytest.mark.grade("second", points=1)
def test_result(student, reference):
    assert student.value("result") == reference.value("result"), "wrong result"
"""


@pytest.fixture(scope="module")
def dependent_course(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A miniature course whose `second` cell calls the `half` that `first` defines."""
    root = tmp_path_factory.mktemp("dependent-course")
    (root / "pyproject.toml").write_text(
        "[tool.grader]\ncell_timeout = 4\nnotebook_timeout = 40\n", encoding="utf-8"
    )
    (root / "checks").mkdir()
    for name in ("01_dep", "02_dep"):
        write(_mini_notebook(), root / "solutions", name)
        (root / "checks" / f"{name}.py").write_text(DEPENDENT_CHECKS, encoding="utf-8")
    config = dataclasses.replace(load_config(root), device="cpu")
    assign(config)
    return config


def _on_follow_through(monkeypatch: pytest.MonkeyPatch, act: Callable[[], Any]) -> None:
    """`act` once, as the first follow-through run is prepared."""
    original = grader.grading.with_solution_cells
    acted: list[bool] = []

    def acting(nb: NotebookNode, solution_nb: NotebookNode, cells: tuple[str, ...]) -> Any:
        if not acted:
            acted.append(True)
            act()
        return original(nb, solution_nb, cells)

    monkeypatch.setattr(grader.grading, "with_solution_cells", acting)


@pytest.mark.slow
def test_ctrl_c_during_a_follow_through_run_reports_that_notebook_with_its_credit(
    dependent_course: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = write(_mini_notebook("def half(x):\n    return x / 3"), tmp_path, "01_dep")
    right = write(_mini_notebook(), tmp_path, "02_dep")
    later = [write(_mini_notebook(), tmp_path / f"later{i}", "02_dep") for i in range(4)]
    stopped = threading.Event()
    original_stop = grader.grading._stop_starting

    def stop(notebooks: Any, event: threading.Event) -> None:
        original_stop(notebooks, event)
        stopped.set()

    def ctrl_c() -> None:
        # What Ctrl-C does: SIGINT to the process, which Python turns into KeyboardInterrupt in
        # the main thread; the notebook's thread, on the follow-through run, goes on once the
        # main thread has stopped starting notebooks (on a loaded machine that can take a while).
        os.kill(os.getpid(), signal.SIGINT)
        assert stopped.wait(timeout=60)

    started_after_stop: list[bool] = []
    original_grade = grader.grading._grade_notebook

    def grade(path: Path, *args: Any) -> NotebookResult:
        started_after_stop.append(stopped.is_set())
        return original_grade(path, *args)

    monkeypatch.setattr(grader.grading, "_stop_starting", stop)
    monkeypatch.setattr(grader.grading, "_grade_notebook", grade)
    _on_follow_through(monkeypatch, ctrl_c)
    reported: list[NotebookResult] = []
    notebooks = [wrong, right, *later]
    with pytest.raises(KeyboardInterrupt):
        check_notebooks(notebooks, dependent_course, workers=1, on_result=reported.append)
    # The notebooks in progress finished and were reported; none was started after Ctrl-C.
    assert not any(started_after_stop) and len(reported) == len(started_after_stop) < len(notebooks)
    (result,) = [r for r in reported if r.path == str(wrong)]
    assert [(c.grade_id, c.passed) for c in result.checks] == [("first", False), ("second", True)]
    assert "full points by follow-through" in result.checks[1].message


@pytest.mark.slow
def test_a_grader_error_in_a_follow_through_run_stops_the_batch_as_any_grader_error(
    dependent_course: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = write(_mini_notebook(), tmp_path, "01_dep")
    wrong = write(_mini_notebook("def half(x):\n    return x / 3"), tmp_path, "02_dep")

    def fail() -> None:
        raise CourseError("the solution notebook vanished")

    _on_follow_through(monkeypatch, fail)
    reported: list[str] = []
    with pytest.raises(CourseError, match="vanished"):
        check_notebooks(
            [right, wrong],
            dependent_course,
            workers=2,
            on_result=lambda r: reported.append(r.notebook),
        )
    assert reported == ["01_dep"]
