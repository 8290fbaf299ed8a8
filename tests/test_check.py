"""The checks run in the grader's own pytest sessions, whatever pytest set-up surrounds them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from grader.check import VariantRuns, run_checks
from grader.extract import RunData
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
