from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from grader.report import gradescope_results, junit_xml, render_text
from grader.results import FAILED, PASSED, CheckResult, NotebookResult


def results() -> list[NotebookResult]:
    checks = (
        CheckResult("02_x", "sgd_loop", "matches", 2, 2, PASSED),
        CheckResult("02_x", "gd_loop", "matches", 2, 0, FAILED, "`w_gd` is wrong"),
        CheckResult("02_x", "gd_loop", "losses", 1, 0, FAILED, "`w_gd` is wrong"),
    )
    return [
        NotebookResult(
            "02_x", "sub/02_x.ipynb", checks, notices=("edits ignored",), seconds=1.5, seeds=(0, 9)
        )
    ]


def test_missing_sandbox_is_said_once_and_recorded() -> None:
    unsandboxed = [
        NotebookResult(f"0{i}_x", "p", (), isolation="not sandboxed: bwrap is not installed")
        for i in range(2)
    ]
    assert render_text(unsandboxed).count("not sandboxed") == 1
    data = gradescope_results(unsandboxed, 1.0)
    assert data["output"].count("not sandboxed") == 1
    assert data["extra_data"]["notebooks"][0]["isolation"].startswith("not sandboxed")


def test_gradescope_schema() -> None:
    data = gradescope_results(results(), 3.25)
    assert (data["score"], data["max_score"], data["execution_time"]) == (2, 5, 3.25)
    assert [test["name"] for test in data["tests"]] == [
        "02_x::sgd_loop::matches", "02_x::gd_loop::matches", "02_x::gd_loop::losses",
    ]  # fmt: skip
    first = data["tests"][1]
    assert first == {
        "name": "02_x::gd_loop::matches", "score": 0, "max_score": 2, "status": "failed",
        "output": "`w_gd` is wrong", "visibility": "visible",
    }  # fmt: skip
    json.dumps(data)


def test_junit_has_a_case_per_check_and_failures() -> None:
    root = ET.fromstring(junit_xml(results()))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "2"
    failures = root.findall(".//failure")
    assert [f.get("message") for f in failures] == ["`w_gd` is wrong"] * 2


def test_text_table_shows_scores_messages_once_and_total() -> None:
    text = render_text(results())
    assert "[PASS] sgd_loop::matches" in text and "[FAIL] gd_loop::losses" in text
    assert text.count("`w_gd` is wrong") == 1
    assert "note: edits ignored" in text
    assert "TOTAL 2/5 points in 1 notebook(s)" in text


def test_seeds_and_the_hidden_runs_message_are_in_no_report() -> None:
    secret_check = CheckResult(
        "02_x", "gd_loop", "hidden", 1, 0, FAILED, "fails on the hidden variant",
        hidden_message="the hidden variant: got 918273645",
    )  # fmt: skip
    result = NotebookResult("02_x", "p", (secret_check,), seeds=(123456789, 918273645))
    rendered = [
        render_text([result]),
        json.dumps(gradescope_results([result], 1.0)),
        junit_xml([result]),
    ]
    for text in rendered:
        assert "918273645" not in text and "123456789" not in text
        assert "fails on the hidden variant" in text


def test_an_error_names_its_file_once_in_results_json() -> None:
    error = "stray/homework.ipynb: no exercise is called 'homework'"
    data = gradescope_results(
        [NotebookResult("homework", "stray/homework.ipynb", (), error=error)], 1
    )
    assert data["output"] == error
