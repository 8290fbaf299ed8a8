"""Render results: a text table for people, Gradescope JSON and JUnit XML for machines."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from grader.results import CheckResult, NotebookResult, total_points, total_score


def render_text(results: list[NotebookResult]) -> str:
    """A readable table per notebook, and the total."""
    blocks = [f"note: {warning}" for warning in isolation_warnings(results)]
    blocks += [_notebook_text(result) for result in results]
    checks = [check for result in results for check in result.checks]
    blocks.append(
        f"TOTAL {_points(total_score(checks))}/{_points(total_points(checks))} points "
        f"in {len(results)} notebook(s)"
    )
    return "\n\n".join(blocks) + "\n"


def isolation_warnings(results: list[NotebookResult]) -> list[str]:
    """One line per distinct reason why kernels ran without the sandbox."""
    reasons = sorted({r.isolation for r in results if r.isolation.startswith("not sandboxed")})
    return [f"{reason}; notebooks ran with resource limits only" for reason in reasons]


def _notebook_text(result: NotebookResult) -> str:
    if result.error:
        return f"{result.notebook}  ({result.path})\n  ERROR: {result.error}"
    seeds = ", ".join(str(seed) for seed in result.seeds)
    lines = [
        f"{result.notebook}  ({result.path})  {result.seconds:.1f} s on {result.device}, "
        f"seeds {seeds}"
    ]
    width = max((len(f"{c.grade_id}::{c.name}") for c in result.checks), default=10)
    for grade_id, group in groupby(result.checks, key=lambda check: check.grade_id):
        checks = list(group)
        messages = {check.message for check in checks if not check.passed}
        shared = len(checks) > 1 and len(messages) == 1 and all(not c.passed for c in checks)
        for check in checks:
            status = "PASS" if check.passed else "FAIL"
            score = f"{_points(check.score)}/{_points(check.points)}"
            lines.append(f"  [{status}] {f'{grade_id}::{check.name}':<{width}}  {score:>7}")
            if check.message and not shared:
                lines.append(f"         {check.message}")
        if shared:
            lines.append(f"         {messages.pop()}")
    lines.extend(f"  note: {notice}" for notice in result.notices)
    lines.append(f"  score {_points(result.score)}/{_points(result.max_score)}")
    return "\n".join(lines)


def gradescope_results(results: list[NotebookResult], seconds: float) -> dict[str, Any]:
    """The run in Gradescope's autograder `results.json` schema."""
    checks = [check for result in results for check in result.checks]
    notices = isolation_warnings(results)
    notices += [f"{result.path}: {result.error}" for result in results if result.error]
    notices += [f"{result.notebook}: {notice}" for result in results for notice in result.notices]
    return {
        "score": total_score(checks),
        "max_score": total_points(checks),
        "execution_time": round(seconds, 3),
        "output": "\n".join(notices),
        "tests": [_gradescope_test(check) for check in checks],
        "extra_data": {
            "notebooks": [
                {
                    "notebook": result.notebook,
                    "path": result.path,
                    "device": result.device,
                    "seeds": list(result.seeds),
                    "isolation": result.isolation,
                }
                for result in results
            ]
        },
    }


def _gradescope_test(check: CheckResult) -> dict[str, Any]:
    return {
        "name": check_id(check),
        "score": check.score,
        "max_score": check.points,
        "status": check.status,
        "output": check.message,
        "visibility": "visible",
    }


def check_id(check: CheckResult) -> str:
    """`<notebook>::<grade_id>::<check>`, the name of a check in every export."""
    return f"{check.notebook}::{check.grade_id}::{check.name}"


def junit_xml(results: list[NotebookResult], labels: Sequence[str] | None = None) -> str:
    """The run as JUnit XML: a test suite per notebook, a test case per check.

    `labels` name the suites (default: the notebooks' names).
    """
    root = ET.Element("testsuites")
    for result, label in zip(results, labels or [r.notebook for r in results], strict=True):
        failures = sum(not check.passed for check in result.checks)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=label,
            tests=str(len(result.checks)),
            failures=str(failures),
            errors="1" if result.error else "0",
            time=f"{result.seconds:.3f}",
        )
        if result.error:
            case = ET.SubElement(suite, "testcase", classname=label, name="grading")
            ET.SubElement(case, "error", message=result.error)
        for check in result.checks:
            case = ET.SubElement(
                suite, "testcase", classname=f"{label}.{check.grade_id}", name=check.name
            )
            if not check.passed:
                failure = ET.SubElement(case, "failure", message=check.message)
                failure.text = f"0/{_points(check.points)} points: {check.message}"
        if result.notices:
            ET.SubElement(suite, "system-out").text = "\n".join(result.notices)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _points(value: float) -> str:
    return f"{value:g}"
