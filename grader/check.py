"""Score a notebook: run its pytest checks module in the grader's own process.

The checks never run in the student's kernel. What the student computed arrives through the
`student` fixture, the reference solution's results through `reference`; every check runs once
per variant (the notebook's own data and the hidden one) and earns its points only when it
holds in both.

Of the hidden variant a student learns only whether each check held there and, when it did not,
one of the fixed sentences of `HIDDEN_FAILURES`: the hidden run's own messages are built from
its values (and a student's cell can put anything into an error), so they are kept for the
instructor in `CheckResult.hidden_message` and never shown to the student.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grader.course import GRADE_MARKER
from grader.errors import CourseError
from grader.extract import CaseResult, RunData
from grader.results import FAILED, PASSED, CheckResult

_PYTEST_LOCK = threading.Lock()
# Settings of the instructor's or CI's own pytest runs, which pytest.main would apply to the
# checks too: `PYTEST_ADDOPTS="-k slow"` would deselect every check, a listed plugin could
# change what they see.
PYTEST_ENVIRONMENT = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")
MAX_GIST_CHARS = 160  # of an earlier cell's failure, quoted in the message of a cell using it
# What a check that failed only in the hidden variant tells the student, by how the TO DO cell
# it grades ended there (`CellStatus.status`; "ok": the cell ran, the check did not hold).
HIDDEN_FAILURES = {
    "ok": "its result is wrong there",
    "error": "its cell raised an error there",
    "timeout": "its cell did not finish in time there",
    "memory": "its cell used more memory than allowed there",
    "died": "its cell crashed the kernel there",
    "skipped": "its cell was not run there",
}


class CheckFailed(AssertionError):
    """A check that did not hold; the message is for the student."""


@dataclass(frozen=True)
class VariantRuns:
    """The student's and the reference solution's runs under one variant."""

    label: str
    student: RunData
    reference: RunData
    hidden: bool = False
    """Whether this is the hidden variant, of which the student learns only the verdicts."""


class NotebookRun:
    """The `student` and `reference` fixtures: one run's values, with messages that name the cell.

    `grade_id` is the TO DO cell the current check grades; a value that is missing is blamed on
    that cell's error, if it had one.
    """

    def __init__(self, data: RunData, grade_id: str, whose: str) -> None:
        self.data = data
        self.grade_id = grade_id
        self.whose = whose

    @property
    def parameters(self) -> dict[str, Any]:
        return self.data.parameters

    def value(self, name: str) -> Any:
        """The notebook variable `name`, or a CheckFailed explaining why it is not there."""
        if name in self.data.values:
            return self.data.values[name]
        raise CheckFailed(self._why_missing(f"`{name}`", self.data.problems.get(name, "")))

    def cases(self, function: str) -> list[CaseResult]:
        """The grader's calls of the student function `function`."""
        if function in self.data.calls:
            return self.data.calls[function]
        problem = self.data.call_problems.get(function, "missing")
        return self._fail_missing(f"the function `{function}`", problem)

    def _fail_missing(self, what: str, problem: str) -> list[CaseResult]:
        raise CheckFailed(self._why_missing(what, problem))

    def _why_missing(self, what: str, problem: str) -> str:
        prefix = "" if self.whose == "student" else "[reference solution, a course bug] "
        cell = self.data.cells.get(self.grade_id)
        if cell is not None and cell.status != "ok":
            return prefix + describe_cell_failure(
                self.grade_id, cell.status, cell.ename, cell.evalue
            )
        if problem and problem != "missing":
            return prefix + f"{what} could not be read: {problem}"
        return prefix + f"{what} is not defined: cell `{self.grade_id}` must define it"


def describe_cell_failure(grade_id: str, status: str, ename: str, evalue: str) -> str:
    """What happened to a cell, in a sentence a student can act on."""
    if status == "timeout":
        limit = f" within {evalue}" if evalue else " in time"
        return f"cell `{grade_id}` did not finish{limit} and was stopped (an endless loop?)"
    if status == "memory":
        return f"cell `{grade_id}` used more memory than allowed and was stopped"
    if status == "died":
        return f"cell `{grade_id}` crashed the kernel; the notebook was run on without it"
    if status == "skipped":
        return f"cell `{grade_id}` was not run: {evalue}"
    if ename == "NotImplementedError":
        return f"cell `{grade_id}` is not done yet (it still raises NotImplementedError)"
    cause = next((hint for text, hint in AUTOGRAD_ERROR_CAUSES if text in evalue), "")
    return f"cell `{grade_id}` raised {ename}: {evalue}{cause}"


AUTOGRAD_ERROR_CAUSES = (
    (
        "leaf Variable that requires grad is being used in an in-place operation",
        " (the update is inside the graph: change the parameters in place within "
        "`with torch.no_grad():`)",
    ),
    (
        "does not require grad and does not have a grad_fn",
        " (autograd recorded nothing to differentiate: the parameters need "
        "`requires_grad=True` and the loss must be computed from them, not from a plain number "
        "or a detached copy)",
    ),
    (
        "backward through the graph a second time",
        " (the same graph was differentiated twice: compute the loss again at every step)",
    ),
    (
        "Use tensor.detach().numpy()",
        " (a tensor that autograd records cannot become numpy: call `.detach()` first)",
    ),
    (
        "'NoneType' object has no attribute 'zero_'",
        " (a parameter's `.grad` is None: it was replaced by a new tensor (`w = w - ...`), "
        "which is no longer the leaf autograd fills; update it in place under `torch.no_grad()`)",
    ),
)
"""Parts of torch's error texts, and the mistake in a training step that each one points to."""


def run_checks(notebook: str, checks_path: Path, runs: list[VariantRuns]) -> list[CheckResult]:
    """Run the checks module against every variant and merge the verdicts per check."""
    collector = _Collector(runs)
    # pytest keeps global state: one session at a time per process
    with _PYTEST_LOCK, _without_pytest_environment():
        exit_code = _run_pytest(checks_path, collector)
    if collector.broken or exit_code in (pytest.ExitCode.INTERNAL_ERROR, 4):
        raise CourseError(
            f"{checks_path}: the checks could not run: {collector.broken or exit_code}"
        )
    if not collector.verdicts:
        raise CourseError(f"{checks_path}: no checks were collected")
    return [_merge(notebook, key, verdicts, runs) for key, verdicts in collector.verdicts.items()]


@contextlib.contextmanager
def _without_pytest_environment() -> Iterator[None]:
    """`PYTEST_ENVIRONMENT` unset while the block runs (the caller holds `_PYTEST_LOCK`)."""
    saved = {name: os.environ.pop(name) for name in PYTEST_ENVIRONMENT if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _run_pytest(checks_path: Path, collector: _Collector) -> int | pytest.ExitCode:
    return pytest.main(
        [
            str(checks_path),
            # plugins installed beside the grader (pytest-randomly reseeds and reorders, ...)
            # are not the checks' business
            "--disable-plugin-autoload",
            "-p", "no:cacheprovider",
            "-p", "no:terminal",
            "-p", "no:warnings",
            # it collects garbage five times per session: seconds per batch with torch loaded
            "-p", "no:unraisableexception",
            # what checks do not use, set up again for every notebook: a third of pytest's time
            "-p", "no:logging",
            "-p", "no:faulthandler",
            "-p", "no:doctest",
            "-p", "no:pastebin",
            "-p", "no:junitxml",
            "-p", "no:stepwise",
            "-c", os.devnull,
            "--rootdir", str(checks_path.parent),
            "--import-mode=importlib",
            "--noconftest",
        ],
        plugins=[collector],
    )  # fmt: skip


@dataclass(frozen=True)
class _Verdict:
    grade_id: str
    points: float
    variant: int
    passed: bool
    message: str
    category: str
    """How the checked cell ended in this run: a key of `HIDDEN_FAILURES`."""


class _Collector:
    """pytest plugin: provides the fixtures and collects one verdict per check and variant."""

    def __init__(self, runs: list[VariantRuns]) -> None:
        self.runs = runs
        self.verdicts: dict[str, list[_Verdict]] = {}
        self.broken = ""

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line(
            "markers", f"{GRADE_MARKER}(grade_id, points): the TO DO cell a check grades"
        )

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "variant" in metafunc.fixturenames:
            labels = [f"variant{index}" for index in range(len(self.runs))]
            metafunc.parametrize("variant", range(len(self.runs)), ids=labels)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.broken = str(report.longrepr)

    @pytest.fixture
    def student(self, variant: int, request: pytest.FixtureRequest) -> NotebookRun:
        """The student's run; a check of a cell that did not run to its end fails at once."""
        grade_id = _grade_of(request.node)[0]
        data = self.runs[variant].student
        cell = data.cells.get(grade_id)
        if cell is not None and cell.status != "ok":
            raise CheckFailed(describe_cell_failure(grade_id, cell.status, cell.ename, cell.evalue))
        return NotebookRun(data, grade_id, "student")

    @pytest.fixture
    def reference(self, variant: int, request: pytest.FixtureRequest) -> NotebookRun:
        return NotebookRun(self.runs[variant].reference, _grade_of(request.node)[0], "reference")

    @pytest.fixture
    def parameters(self, variant: int) -> dict[str, Any]:
        return dict(self.runs[variant].student.parameters)

    @pytest.fixture
    def device(self, variant: int) -> Any:
        import torch  # imported late: the grader's start overlaps the first kernel's

        return torch.device(self.runs[variant].student.parameters["device"])

    @pytest.fixture
    def rng(self, variant: int, request: pytest.FixtureRequest) -> np.random.Generator:
        seed = int(self.runs[variant].student.parameters.get("seed", 0))
        return np.random.default_rng([seed, variant, len(request.node.originalname)])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if call.when == "call" or (call.when == "setup" and report.failed):
            self._record(item, call, report.passed)
        return report

    def _record(self, item: pytest.Item, call: pytest.CallInfo[None], passed: bool) -> None:
        grade_id, points = _grade_of(item)
        variant = int(item.callspec.params["variant"])  # type: ignore[attr-defined]
        message = "" if passed or call.excinfo is None else _failure_message(call.excinfo)
        name = getattr(item, "originalname", item.name)
        cell = self.runs[variant].student.cells.get(grade_id)
        category = "ok" if cell is None else cell.status
        self.verdicts.setdefault(name, []).append(
            _Verdict(grade_id, points, variant, passed, message, category)
        )


def _grade_of(node: Any) -> tuple[str, float]:
    marker = node.get_closest_marker(GRADE_MARKER)
    if marker is None or not marker.args:
        raise CourseError(f"check {node.name} has no @pytest.mark.grade(grade_id, points=...)")
    return str(marker.args[0]), float(marker.kwargs.get("points", 1))


def _failure_message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    error = excinfo.value
    if isinstance(error, CheckFailed):
        return str(error)
    if isinstance(error, AssertionError):
        return str(error).splitlines()[0] if str(error) else "a check did not hold"
    return f"the check could not use your result: {type(error).__name__}: {error}"


def _merge(
    notebook: str, name: str, verdicts: list[_Verdict], runs: list[VariantRuns]
) -> CheckResult:
    first = verdicts[0]
    check = name.removeprefix("test_")
    failures = [verdict for verdict in verdicts if not verdict.passed]
    if not failures:
        return CheckResult(notebook, first.grade_id, check, first.points, first.points, PASSED)
    hidden = [verdict for verdict in failures if runs[verdict.variant].hidden]
    public = [verdict for verdict in failures if not runs[verdict.variant].hidden]
    message = public[0].message if public else _hidden_failure(runs[hidden[0].variant], hidden[0])
    hidden_message = "\n".join(f"{runs[v.variant].label}: {v.message}" for v in hidden)
    return CheckResult(
        notebook, first.grade_id, check, first.points, 0.0, FAILED, message, hidden_message
    )


def _hidden_failure(run: VariantRuns, verdict: _Verdict) -> str:
    """The student's message for a check that held on the notebook's own data only."""
    what = HIDDEN_FAILURES.get(verdict.category, "it did not hold there")
    return (
        f"passes on the notebook's own data but not on {run.label} "
        f"(another seed and other coefficients): {what}; is something hard-coded?"
    )


@dataclass(frozen=True)
class FollowThrough:
    """One more run of each variant, in which the failed TO DO cells `substituted` hold the
    solution's code, to grade the TO DO cells `dependents` that use them."""

    substituted: tuple[str, ...]
    dependents: tuple[str, ...]


def plan_follow_through(
    checks: list[CheckResult], depends_on: dict[str, dict[str, str]], edited: frozenset[str]
) -> FollowThrough | None:
    """The follow-through run a notebook needs, or None (the normal case: nothing more to run).

    It is needed for a TO DO cell that lost points, was written (`edited`: a cell left as the
    placeholder fails by itself) and uses a cell that lost points too. A cell that is itself
    substituted is not graded again: follow-through is one level deep.
    """
    failed = {check.grade_id for check in checks if not check.passed}
    needs = {
        dependent: [used for used in uses if used in failed]
        for dependent, uses in depends_on.items()
        if dependent in failed and dependent in edited
    }
    substituted = sorted({used for uses in needs.values() for used in uses})
    dependents = sorted(cell for cell, uses in needs.items() if uses and cell not in substituted)
    if not dependents:
        return None
    return FollowThrough(tuple(substituted), tuple(dependents))


def credit_follow_through(
    checks: list[CheckResult],
    plan: FollowThrough,
    substituted_checks: list[CheckResult],
    depends_on: dict[str, dict[str, str]],
) -> list[CheckResult]:
    """`checks` after the follow-through run: a dependent that passes every check of it, in both
    variants, gets full points; one that does not keeps its verdicts, with the cause named.

    Only pass or fail is read from `substituted_checks`: solution code ran in the student's
    kernel there, so its values and messages must not reach the student (as the hidden run's).
    """
    verdicts: dict[str, list[bool]] = {}
    for check in substituted_checks:
        verdicts.setdefault(check.grade_id, []).append(check.passed)
    still_failing = {(c.grade_id, c.name) for c in substituted_checks if not c.passed}
    credited = {cell for cell in plan.dependents if all(verdicts.get(cell, [False]))}
    result = []
    for check in checks:
        if check.passed or check.grade_id not in plan.dependents:
            result.append(check)
            continue
        uses = {
            cell: name
            for cell, name in depends_on[check.grade_id].items()
            if cell in plan.substituted
        }
        cause = _cause(check.grade_id, uses, checks)
        if check.grade_id in credited:
            message = _credit_message(check.grade_id, uses, cause)
            result.append(replace(check, score=check.points, status=PASSED, message=message))
        else:
            own = (check.grade_id, check.name) in still_failing
            message = f"{check.message} ({cause}; {_own_mistake(check.grade_id, uses, own)})"
            result.append(replace(check, message=message))
    return result


def _cause(cell: str, uses: dict[str, str], checks: list[CheckResult]) -> str:
    """'your `gradient` is wrong (dℓ/dw is off by a factor of 2; see cell `manual_gradient`) and
    `sgd_loop` uses it', from the first failure of each cell used (the student's own run)."""
    wrong = [
        f"your `{name}` is wrong ({_gist(_first_failure(used, checks))}; see cell `{used}`)"
        for used, name in uses.items()
    ]
    return f"{' and '.join(wrong)} and `{cell}` uses {'it' if len(uses) == 1 else 'them'}"


def _first_failure(cell: str, checks: list[CheckResult]) -> str:
    return next(check.message for check in checks if check.grade_id == cell and not check.passed)


def _gist(message: str) -> str:
    """What went wrong, without the numbers: the part of a message before its first ': '."""
    gist = message.split(": ", 1)[0]
    return gist if len(gist) <= MAX_GIST_CHARS else gist[: MAX_GIST_CHARS - 1] + "…"


def _names(uses: dict[str, str]) -> str:
    return " and ".join(f"`{name}`" for name in uses.values())


def _credit_message(cell: str, uses: dict[str, str], cause: str) -> str:
    where = " and ".join(f"cell `{used}`" for used in uses)
    return (
        f"full points by follow-through: {cause}; with the reference solution's {_names(uses)}, "
        f"`{cell}` passes, so that one mistake costs points only in {where}"
    )


def _own_mistake(cell: str, uses: dict[str, str], still_failing: bool) -> str:
    correct = f"the reference solution's {_names(uses)}"
    if still_failing:
        return f"but this check fails even with {correct}: `{cell}` has a mistake of its own"
    return (
        f"with {correct} this check passes, but other checks of `{cell}` do not: `{cell}` has "
        "a mistake of its own, so it gets no follow-through credit"
    )
