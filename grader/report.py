"""Render results: a text table for people, Gradescope JSON and JUnit XML for machines.

Results hold text from students (messages, notices, paths), cleaned where it entered the grader;
each rendering cleans it again (`grader.untrusted`), cheaply, so that no result can put a control
character on the terminal, an invalid character in XML, or a line that looks like the grader's
own: continuation lines of a message are indented under it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from grader.results import CheckResult, NotebookResult, total_points, total_score
from grader.untrusted import clean_line, clean_text

MESSAGE_INDENT = " " * 9


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
    title = f"{clean_line(result.notebook)}  ({clean_line(result.path)})"
    if result.error:
        return f"{title}\n  ERROR: {_indented(result.error, MESSAGE_INDENT)}"
    # No seeds: the hidden variant's would tell a student which data it draws.
    lines = [f"{title}  {result.seconds:.1f} s on {clean_line(result.device)}"]
    width = max((len(clean_line(f"{c.grade_id}::{c.name}")) for c in result.checks), default=10)
    for grade_id, group in groupby(result.checks, key=lambda check: check.grade_id):
        checks = list(group)
        messages = {check.message for check in checks if not check.passed}
        shared = len(checks) > 1 and len(messages) == 1 and all(not c.passed for c in checks)
        for check in checks:
            status = "PASS" if check.passed else "FAIL"
            score = f"{_points(check.score)}/{_points(check.points)}"
            name = clean_line(f"{grade_id}::{check.name}")
            lines.append(f"  [{status}] {name:<{width}}  {score:>7}")
            if check.message and not shared:
                lines.append(MESSAGE_INDENT + _indented(check.message, MESSAGE_INDENT))
        if shared:
            lines.append(MESSAGE_INDENT + _indented(messages.pop(), MESSAGE_INDENT))
    lines.extend(f"  note: {_indented(notice, MESSAGE_INDENT)}" for notice in result.notices)
    lines.append(f"  score {_points(result.score)}/{_points(result.max_score)}")
    return "\n".join(lines)


def gradescope_results(
    results: list[NotebookResult], seconds: float, notes: Sequence[str] = ()
) -> dict[str, Any]:
    """The run in Gradescope's autograder `results.json` schema; `notes` open its `output`.

    Every test is visible at once, with its score: what a student may learn of the hidden
    variant is in the checks' own messages already (a fixed sentence). Text is plain text
    (`output_format`), so no message can render as HTML or Markdown; stdout, where the
    autograder logs for the instructor, is never shown to students.
    """
    checks = [check for result in results for check in result.checks]
    notices = [*notes, *isolation_warnings(results)]
    notices += [result.error for result in results if result.error]  # each names its file
    notices += [f"{result.notebook}: {notice}" for result in results for notice in result.notices]
    return {
        "score": total_score(checks),
        "max_score": total_points(checks),
        "execution_time": round(seconds, 3),
        "output": "\n".join(clean_text(notice) for notice in notices),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [_gradescope_test(check) for check in checks],
        "extra_data": {
            "notebooks": [
                {
                    "notebook": clean_line(result.notebook),
                    "path": clean_line(result.path),
                    "device": result.device,
                    "isolation": clean_text(result.isolation),
                }
                for result in results
            ]
        },
    }


def _gradescope_test(check: CheckResult) -> dict[str, Any]:
    return {
        "name": clean_line(check_id(check)),
        "score": check.score,
        "max_score": check.points,
        "status": check.status,
        "output": clean_text(check.message),
        "visibility": "visible",
    }


def check_id(check: CheckResult) -> str:
    """`<notebook>::<grade_id>::<check>`, the name of a check in every export."""
    return f"{check.notebook}::{check.grade_id}::{check.name}"


def junit_xml(
    results: list[NotebookResult],
    labels: Sequence[str] | None = None,
    properties: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """The run as JUnit XML: a test suite per notebook, a test case per check.

    `labels` name the suites (default: the notebooks' names); `properties` become each suite's
    `<properties>`. Every text is cleaned: the file holds only characters XML 1.0 allows.
    """
    root = ET.Element("testsuites")
    labelled = zip(results, labels or [r.notebook for r in results], strict=True)
    for index, (result, raw_label) in enumerate(labelled):
        label = clean_line(raw_label)
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
        if properties:
            listed = ET.SubElement(suite, "properties")
            for name, value in properties[index].items():
                ET.SubElement(listed, "property", name=clean_line(name), value=clean_line(value))
        if result.error:
            case = ET.SubElement(suite, "testcase", classname=label, name="grading")
            ET.SubElement(case, "error", message=clean_text(result.error))
        for check in result.checks:
            classname, name = clean_line(f"{label}.{check.grade_id}"), clean_line(check.name)
            case = ET.SubElement(suite, "testcase", classname=classname, name=name)
            if not check.passed:
                message = clean_text(check.message)
                failure = ET.SubElement(case, "failure", message=message)
                failure.text = f"0/{_points(check.points)} points: {message}"
        if result.notices:
            notices = "\n".join(clean_text(notice) for notice in result.notices)
            ET.SubElement(suite, "system-out").text = notices
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _points(value: float) -> str:
    return f"{value:g}"


def _indented(text: str, indent: str) -> str:
    """`text` cleaned, its continuation lines indented so none can pass for a report line."""
    return clean_text(text).replace("\n", "\n" + indent)
