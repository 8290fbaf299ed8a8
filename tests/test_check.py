"""The checks run in the grader's own pytest sessions, whatever pytest set-up surrounds them."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

from grader.check import VariantRuns, describe_cell_failure, run_checks
from grader.extract import CellOutcome, RunData
from grader.results import FAILED, PASSED

CHECKS = """
import pytest


@pytest.mark.grade("answer", points=2)
def test_answer_is_forty_two(student):
    assert student.value("answer") == 42, "the answer is not 42"


@pytest.mark.grade("answer", points=1)
def test_answer_is_positive(student):
    assert student.value("answer") > 0
"""
# A plugin that would fail every check it sees.
SABOTAGE = """
def pytest_runtest_call(item):
    raise RuntimeError("sabotaged")
"""


def run(answer: int) -> RunData:
    return RunData(
        parameters={"seed": 0},
        values={"answer": answer},
        problems={},
        calls={},
        call_problems={},
        cells={},
    )


def verdicts(tmp_path: Path, answer: int) -> dict[str, tuple[str, float, str]]:
    checks = tmp_path / "checks.py"
    checks.write_text(CHECKS)
    runs = [VariantRuns("own", run(answer), run(42)), VariantRuns("hidden", run(answer), run(42))]
    return {
        check.name: (check.status, check.score, check.message)
        for check in run_checks("nb", checks, runs)
    }


EXPECTED = {
    "answer_is_forty_two": (FAILED, 0.0, "the answer is not 42"),
    "answer_is_positive": (PASSED, 1.0, ""),
}


def test_checks_give_their_verdicts(tmp_path: Path) -> None:
    assert verdicts(tmp_path, 7) == EXPECTED


def test_pytest_settings_in_the_environment_do_not_reach_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sabotage_plugin.py").write_text(SABOTAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k nothing_matches")
    monkeypatch.setenv("PYTEST_PLUGINS", "sabotage_plugin")
    assert verdicts(tmp_path, 7) == EXPECTED
    # The instructor's own settings are back once the checks have run.
    assert os.environ["PYTEST_ADDOPTS"] == "-k nothing_matches"
    assert os.environ["PYTEST_PLUGINS"] == "sabotage_plugin"


def test_plugins_installed_beside_the_grader_are_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed distribution that declares a pytest11 entry point, as pytest-randomly does.
    (tmp_path / "sabotage_plugin.py").write_text(SABOTAGE)
    info = tmp_path / "sabotage_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sabotage-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nsabotage = sabotage_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "sabotage_plugin" not in sys.modules
    assert verdicts(tmp_path, 7) == EXPECTED
    assert "sabotage_plugin" not in sys.modules


def hidden_run(answer: int, cell: CellOutcome | None = None) -> RunData:
    cells = {} if cell is None else {"answer": cell}
    return dataclasses.replace(run(answer), parameters={"seed": 918273645}, cells=cells)


# The hidden variant's run of a student whose public run is right: each row is how the checked
# cell ended there, and the fixed sentence the student reads instead of what happened.
HIDDEN_OUTCOMES = {
    "wrong value": (hidden_run(31415), "its result is wrong there"),
    "error carrying a value": (
        hidden_run(0, CellOutcome("answer", "error", "ValueError", "w_true is 31415")),
        "its cell raised an error there",
    ),
    "error named after a value": (
        hidden_run(0, CellOutcome("answer", "error", "Leak31415", "")),
        "its cell raised an error there",
    ),
    "timeout": (
        hidden_run(0, CellOutcome("answer", "timeout", evalue="31415 s")),
        "did not finish in time",
    ),
    "memory": (
        hidden_run(0, CellOutcome("answer", "memory")),
        "used more memory than allowed there",
    ),
    "crashed": (hidden_run(0, CellOutcome("answer", "died")), "its cell crashed the kernel there"),
    "not run": (
        hidden_run(0, CellOutcome("answer", "skipped", evalue="31415")),
        "was not run there",
    ),
}


@pytest.mark.parametrize("case", sorted(HIDDEN_OUTCOMES))
def test_the_hidden_run_tells_the_student_only_a_fixed_category(tmp_path: Path, case: str) -> None:
    hidden, category = HIDDEN_OUTCOMES[case]
    checks = tmp_path / "checks_that_print_the_value.py"  # a module name of its own
    checks.write_text(
        CHECKS.replace('"the answer is not 42"', "f\"got {student.value('answer')}\"")
    )
    runs = [
        VariantRuns("the notebook's own data", run(42), run(42)),
        VariantRuns("the hidden variant", hidden, run(42), hidden=True),
    ]
    results = {check.name: check for check in run_checks("nb", checks, runs)}
    failed = results["answer_is_forty_two"]
    assert failed.status == FAILED and category in failed.message
    assert failed.message.startswith("passes on the notebook's own data but not on the hidden")
    assert "31415" not in failed.message and "918273645" not in failed.message
    assert failed.hidden_message.startswith("the hidden variant: ")
    assert "31415" in failed.hidden_message or case in ("memory", "crashed")


def test_a_failure_on_the_notebooks_own_data_is_told_in_full(tmp_path: Path) -> None:
    checks = tmp_path / "checks.py"
    checks.write_text(CHECKS)
    runs = [
        VariantRuns("the notebook's own data", run(7), run(42)),
        VariantRuns("the hidden variant", hidden_run(31415), run(42), hidden=True),
    ]
    results = {check.name: check for check in run_checks("nb", checks, runs)}
    failed = results["answer_is_forty_two"]
    assert failed.message == "the answer is not 42"
    assert failed.hidden_message == "the hidden variant: the answer is not 42"


@pytest.mark.parametrize(
    ("evalue", "cause"),
    [
        (
            "a leaf Variable that requires grad is being used in an in-place operation.",
            "the update is inside the graph",
        ),
        (
            "element 0 of tensors does not require grad and does not have a grad_fn",
            "autograd recorded nothing to differentiate",
        ),
        (
            "Trying to backward through the graph a second time (or directly access saved "
            "tensors after they have already been freed).",
            "compute the loss again at every step",
        ),
        ("'NoneType' object has no attribute 'zero_'", "a parameter's `.grad` is None"),
    ],
)
def test_autograd_errors_are_named_by_their_cause(evalue: str, cause: str) -> None:
    message = describe_cell_failure("training_loop", "error", "RuntimeError", evalue)
    assert message.startswith(f"cell `training_loop` raised RuntimeError: {evalue}")
    assert cause in message
